"""`python -m devstack.fakes.llm`: the simulator in the foreground (see the package docstring)."""

import argparse
import asyncio
import os
from pathlib import Path

import devstack.fakes.llm
from devstack.fakes.llm.app import DEFAULT_MODEL, Simulator
from devstack.fakes.llm.engine import Calibration, Fitted, OutputLengths, SchedulingPolicy
from devstack.serving import listen_args, loopback_socket


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakes.llm",
        description=devstack.fakes.llm.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_args(parser)
    parser.add_argument("--control-port", type=int, default=None)
    parser.add_argument(
        "--latency", type=float, default=None, help="exact-latency mode: seconds per completion"
    )
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY", ""))
    parser.add_argument("--max-num-queued-reqs", type=int, default=None)
    parser.add_argument("--scheduling-policy", type=SchedulingPolicy, default=SchedulingPolicy.FCFS)
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="a fit measured on an engine (python -m bench.calibrate); default: the published 7B",
    )
    args = parser.parse_args(argv)
    fitted = (
        Fitted.load(args.calibration, args.max_num_seqs)
        if args.calibration
        else Fitted(Calibration.published(max_num_seqs=args.max_num_seqs), OutputLengths())
    )
    simulator = Simulator(
        fitted.calibration,
        time_scale=args.time_scale,
        seed=args.seed,
        model=args.model,
        api_key=args.api_key,
        max_num_queued_reqs=args.max_num_queued_reqs,
        scheduling_policy=args.scheduling_policy,
        lengths=fitted.lengths,
        characters_per_token=fitted.characters_per_token,
        latency_s=args.latency,
    )
    sockets = [loopback_socket(args.host, args.port)]
    if args.control_port is not None:
        sockets.append(loopback_socket("127.0.0.1", args.control_port))
    asyncio.run(simulator.serve(sockets))


if __name__ == "__main__":
    main()
