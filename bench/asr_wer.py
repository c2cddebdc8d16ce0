"""Word error rate and speed of the offline recognizers, on the same speech.

PocketSphinx (the local backend's input transcription today) against Moonshine
base-en (``moonshine-cpp``, what test callers hear with), on sentences a caller
of the demo shop says, synthesised with espeak-ng in several voices, clean and
through a telephone line (300-3400 Hz, 8 kHz mu-law). Prints, per recognizer
and condition: WER (word-level edit distance over the reference words, after
lower-casing, dropping punctuation and writing digits as words), CPU seconds
per second of speech, and the worst sentence.

    .venv/bin/python bench/asr_wer.py [--voices en-us,en-us+f3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.realtime.transcribe import Transcriber  # noqa: E402
from agent.sound.espeak import speak  # noqa: E402
from agent.sound.g711 import phone_line  # noqa: E402
from agent.sound.recognizer import Recognizer, word_edit_distance  # noqa: E402

SENTENCES = [
    "What time does the coffee shop open on Sunday morning?",
    "I would like to order two lattes and a croissant.",
    "What is the status of my order?",
    "Can I speak to a person please?",
    "My name is Alice and my phone number is five five five one two three four.",
    "Do you have any vegan options on the menu?",
    "Please cancel my last order.",
    "How much does a large cappuccino cost?",
    "I want to change my delivery address to ten Main Street.",
    "Thank you very much, goodbye.",
]
DIGITS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> list[str]:
    text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text.lower())
    return re.sub(r"[^a-z' ]+", " ", text).split()


async def run(voices: list[str]) -> dict[str, dict[str, object]]:
    sphinx, moon = Transcriber(), Recognizer()
    await moon.transcribe(np.zeros(1600, np.int16) + 1000, 16000)  # load the model before timing
    await sphinx.transcribe(np.zeros(1600, np.int16), 16000)
    results: dict[str, dict[str, object]] = {}
    for condition in ("clean", "phone"):
        for name, engine in (("pocketsphinx", sphinx), ("moonshine", moon)):
            errors = total = 0
            cpu = speech_s = 0.0
            worst = (0.0, "", "")
            for voice in voices:
                for text in SENTENCES:
                    pcm, rate = speak(text, voice=voice)
                    if condition == "phone":
                        pcm = phone_line(pcm, rate)  # telephone band, 8 kHz mu-law, back at the same rate
                    started = time.perf_counter()
                    heard = await engine.transcribe(pcm, rate)
                    cpu += time.perf_counter() - started  # wall time of a decode on an idle machine
                    speech_s += len(pcm) / rate
                    ref = words(text)
                    e = word_edit_distance(ref, words(heard))
                    errors, total = errors + e, total + len(ref)
                    if e / len(ref) > worst[0]:
                        worst = (e / len(ref), text, heard)
            key = f"{name} / {condition}"
            results[key] = {"wer": errors / total, "seconds_per_second": cpu / speech_s, "worst": worst}
            print(f"{key:26s} WER {errors / total:6.1%}  decode {cpu / speech_s:.3f} s per s of speech  "
                  f"worst {worst[0]:.0%}: {worst[1]!r} -> {worst[2]!r}", flush=True)  # fmt: skip
    sphinx.close()
    moon.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="en-us,en-us+f3,en-us+m3", help="espeak-ng voices (comma list)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.voices.split(",")))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
