"""Talk to a running ``granite-nar serve`` with the official openai client: transcripts, subtitles, words.

    granite-nar serve --model examples/models/tiny-synth &      # in another terminal
    python examples/serve_client.py examples/audio/demo.wav examples/audio/talk.flac

Files are sent concurrently (``--concurrency``), so the server packs them into shared batches. With
``--srt-dir`` each file's subtitles are written next to their name; with ``--words`` the word times are
printed. A file the server refuses is reported with the server's message and does not stop the others.
The key comes from ``--api-key`` or ``GRANITE_NAR_API_KEY``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai


def transcribe_one(client: openai.OpenAI, model: str, path: Path, words: bool, srt_dir: Path | None) -> str:
    with open(path, "rb") as handle:
        verbose = client.audio.transcriptions.create(
            file=handle,
            model=model,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"] if words else ["segment"],
        )
    lines = [f"{path}: {verbose.text}  ({verbose.duration:.1f} s, {len(verbose.segments)} segment(s))"]
    if words:
        lines += [f"  {w.start:7.2f} {w.end:7.2f}  {w.word}" for w in verbose.words]
    if srt_dir is not None:
        with open(path, "rb") as handle:
            subtitles = client.audio.transcriptions.create(file=handle, model=model, response_format="srt")
        target = srt_dir / f"{path.stem}.srt"
        target.write_text(subtitles, encoding="utf-8")
        lines.append(f"  subtitles: {target}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1", help="the server's /v1 address")
    parser.add_argument("--api-key", default=os.environ.get("GRANITE_NAR_API_KEY", "none"))
    parser.add_argument("--model", default=None, help="served model name (default: the first one listed)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--words", action="store_true", help="print every word with its times")
    parser.add_argument("--srt-dir", type=Path, default=None, help="write <name>.srt files here")
    args = parser.parse_args(argv)
    client = openai.OpenAI(base_url=args.url, api_key=args.api_key, max_retries=2, timeout=600)
    model = args.model or client.models.list().data[0].id
    if args.srt_dir is not None:
        args.srt_dir.mkdir(parents=True, exist_ok=True)

    def job(path: Path) -> tuple[bool, str]:
        try:
            return True, transcribe_one(client, model, path, args.words, args.srt_dir)
        except openai.APIStatusError as err:  # the server's own message says what is wrong
            return False, f"{path}: refused ({err.status_code}): {err.response.json()['error']['message']}"

    failed = 0
    with ThreadPoolExecutor(args.concurrency) as pool:
        for ok, report in pool.map(job, args.files):
            print(report, file=sys.stdout if ok else sys.stderr)
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
