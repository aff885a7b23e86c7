"""Coverage-guided fuzzing of the request decoder with atheris (not part of the pytest run).

Same target and same verdict as tests/security/test_fuzz_request_decoder.py (form parsing, method lookup,
JEncode ``args`` decoding, type and arity checks: a valid call or a 400/501 S_ERROR, nothing else; and
``Encoding.decode`` raising only DecodeError), driven by libFuzzer instead of hypothesis::

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_request_decoder.py -runs=200000          # bounded run
    .venv/bin/python tests/fuzz/fuzz_request_decoder.py -max_total_time=600 corpus/   # keep a corpus

A crash prints the input and writes it to ``crash-<sha1>``; replay it by passing that file as argument.
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    import atheris
except ImportError:
    sys.exit("atheris is not installed: .venv/bin/pip install atheris")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "security"))

with atheris.instrument_imports(include=["TornadoServices", "tornado.httputil", "json"]):
    from TornadoServices.Core.Encoding import DecodeError, EncodeError, decode, encode
    from test_fuzz_request_decoder import FORM, assertValidOutcome

CONTENT_TYPES = [FORM, "multipart/form-data; boundary=b", "multipart/form-data", "text/plain", ""]


def testOneInput(data: bytes) -> None:
    """One fuzz input: a content type choice, a query ``method`` and a body."""
    provider = atheris.FuzzedDataProvider(data)
    contentType = CONTENT_TYPES[provider.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    queryMethod = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 16))
    body = provider.ConsumeBytes(provider.remaining_bytes())
    assertValidOutcome(contentType, body, {"method": [queryMethod]} if queryMethod else None)
    try:
        value, _ = decode(body)
    except DecodeError:
        return
    try:
        encode(value)
    except EncodeError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
