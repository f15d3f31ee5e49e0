"""`facelatent serve`: the web editor (Gradio), on this machine only unless told otherwise."""

from __future__ import annotations

import argparse
import importlib.util
import sys

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="the web editor: sliders over a face, in the browser",
        description="Serve a page for editing faces: a seed, a latents file or an uploaded "
                    "photo (aligned and inverted), one slider per boundary in sigma units, "
                    "keep-fixed conditions, style-input ranges, SeFa directions, live scores "
                    "and identity, PNG and latent downloads. Needs `pip install "
                    "'facelatent[web]'`. Listens on 127.0.0.1 unless --host says otherwise.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--boundaries", metavar="DIR",
                     help="folder of boundary files, one slider each (default: the pose, smile, "
                          "age, gender and eyeglasses boundaries shipped with facelatent)")
    src.add_argument("--store", help="fit pose, smile, age, gender and eyeglasses on this "
                                     "LatentStore on first start (kept in the cache)")
    p.add_argument("--mapping", metavar="CHECKPOINT",
                   help="identity/attribute mapping (`facelatent mapping train`): adds the "
                        "swap tab and starts photo inversions from its encoder")
    p.add_argument("--identities", metavar="DIR",
                   help="identity boundaries (`facelatent identity fit`): adds a page of "
                        "faces of one synthetic identity")
    p.add_argument("--sefa", type=int, default=5, help="SeFa directions to offer (default 5)")
    p.add_argument("--psi", type=float, default=None,
                   help="truncation for seeds (default: the boundaries' store's, else 1)")
    p.add_argument("--invert-steps", type=int, default=60,
                   help="optimisation steps for an uploaded photo (default 60)")
    p.add_argument("--preview", type=int, default=256,
                   help="size in px of the image shown while a slider moves (default 256)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true",
                   help="also ask Gradio for a public share link (off by default)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, ...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facelatent.webui.load import load_service

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must lie in 1..65535, got {args.port}")
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the web editor needs Gradio: pip install 'facelatent[web]'")
    from facelatent.webui.app import launch

    if args.host not in LOCAL_HOSTS:
        print(f"facelatent serve: warning: listening on {args.host}, so anyone who can reach "
              f"this machine on port {args.port} can use the editor: render faces, upload "
              "photos and use this machine's CPU. Use --host 127.0.0.1 to keep it local.",
              file=sys.stderr)
    if args.share:
        print("facelatent serve: warning: --share asks Gradio for a public link: anyone with "
              "it can use the editor through Gradio's relay", file=sys.stderr)
    service = load_service(boundaries=args.boundaries, store=args.store, mapping=args.mapping,
                           identities=args.identities, sefa=args.sefa, psi=args.psi,
                           invert_steps=args.invert_steps, preview_size=args.preview,
                           device=args.device)
    print(f"facelatent serve: {len(service.directions)} sliders; Ctrl-C stops the server",
          file=sys.stderr, flush=True)
    launch(service, host=args.host, port=args.port, share=args.share)
    return 0
