"""File transfer over the HTTPS RPC protocol, streamed both ways (DIRAC's TransferClient calls).

Download, ``receiveFile(dest, *args)``: ``POST`` form fields ``method=streamToClient``, ``args``,
``rawContent=True`` (then extraCredentials, clientVO, clientSetup as for any call). The raw answer
is written to ``dest`` in chunks as it arrives. An answer typed ``application/json`` is the
service's S_OK/S_ERROR and is returned as such -- never written into the file; a failure midway
removes the partial file (when ``dest`` is a path).

Upload, ``sendFile(source, fileID, token="")``: ``POST <url>?method=streamFromClient&args=
<JEncode [fileID, token, fileSize]>&...`` whose body is the raw file content
(``Content-Type: application/octet-stream``; ``Content-Length`` when the size is known, else
chunked). The file is read in blocks while sending, never loaded whole. The service's handler
``export_streamFromClient(fileID, token, fileSize, stream)`` answers with S_OK/S_ERROR.

Transfer timeouts are inactivity limits (no byte for ``timeout`` seconds), not limits on the whole transfer.
"""
from __future__ import annotations

import contextlib
import os
from typing import IO, Any, Iterator, Optional, Union

from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.transport import Response
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Core.ReturnValues import S_OK

__all__ = ["TransferClient"]

CHUNK_SIZE = 256 * 1024
JSON_ANSWER_LIMIT = 16 * 1024 * 1024


class TransferClient(TornadoClient):
    """An RPC client that can also stream files to and from the service."""

    def receiveFile(self, destFile: Union[str, os.PathLike, IO[bytes]], *args: Any) -> dict[str, Any]:
        """Download what ``export_streamToClient(*args)`` sends into ``destFile`` (path or binary file object)."""
        result = self._guarded("receiveFile", lambda: self._receive(destFile, args))
        result["rpcStub"] = self._rpcStub("streamToClient", args)
        return result

    def sendFile(self, source: Union[str, os.PathLike, IO[bytes]], fileID: Any, token: str = "") -> dict[str, Any]:
        """Upload ``source`` (path or binary file object) to ``export_streamFromClient(fileID, token, size, stream)``."""
        result = self._guarded("sendFile", lambda: self._upload(source, fileID, token))
        result["rpcStub"] = self._rpcStub("streamFromClient", [fileID, token])
        return result

    # ------------------------------------------------------------------ download
    def _receive(self, destFile: Union[str, os.PathLike, IO[bytes]], args: tuple[Any, ...]) -> dict[str, Any]:
        fields = [("method", "streamToClient"), ("args", self._encodeArgs("streamToClient", args)), ("rawContent", "True")]
        fields += self._commonFields()

        def handle(response: Response, url: str, deadline: Optional[float]) -> dict[str, Any]:
            if response.status != 200:
                raise self._readStatusError(response, url, "streamToClient")
            if response.contentType == "application/json":
                return self._jsonAnswer(response, url)
            return self._writeTo(response, destFile)

        return self._send(fields, handle, timeouts=self._timeouts(transfer=True))

    def _jsonAnswer(self, response: Response, url: str) -> dict[str, Any]:
        """A JSON answer to a download is the service's S_OK/S_ERROR, returned untouched."""
        parts: list[bytes] = []
        size = 0
        for chunk in response.iterContent(CHUNK_SIZE):
            size += len(chunk)
            if size > JSON_ANSWER_LIMIT:
                raise E.UndecodableBody(
                    f"{url} answered streamToClient with more than {JSON_ANSWER_LIMIT} bytes of JSON instead of "
                    "file content; the service should send application/octet-stream",
                    url=url,
                )
            parts.append(chunk)
        return self._parseResult(b"".join(parts), response, url, "streamToClient")

    def _writeTo(self, response: Response, destFile: Union[str, os.PathLike, IO[bytes]]) -> dict[str, Any]:
        """Copy the body to the destination chunk by chunk; remove a partially written file on failure."""
        if hasattr(destFile, "write"):
            for chunk in response.iterContent(CHUNK_SIZE):
                destFile.write(chunk)  # type: ignore[union-attr]
            return S_OK()
        path = os.fspath(destFile)  # type: ignore[arg-type]
        try:
            with open(path, "wb") as handle:
                for chunk in response.iterContent(CHUNK_SIZE):
                    handle.write(chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return S_OK()

    # ------------------------------------------------------------------ upload
    def _upload(self, source: Union[str, os.PathLike, IO[bytes]], fileID: Any, token: str) -> dict[str, Any]:
        opened: list[IO[bytes]] = []
        if hasattr(source, "read"):
            handle: IO[bytes] = source  # type: ignore[assignment]
            start = _tell(handle)
            size = _remainingSize(handle, start)
        else:
            path = os.fspath(source)  # type: ignore[arg-type]
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise E.ClientSetupError(f"Cannot send {path}: {exc.strerror}", errno=exc.errno or 0) from exc
            handle = None  # type: ignore[assignment]
            start = 0

        def bodyFor(attempt: int) -> Any:
            if handle is None:
                fileObject = open(path, "rb")
                opened.append(fileObject)
                return fileObject if size > 0 else b""
            if attempt > 0:
                if start is None:
                    return None
                handle.seek(start)
            if size is None:
                return _blocks(handle)
            return handle if size > 0 else b""

        params = [("method", "streamFromClient"),
                  ("args", self._encodeArgs("streamFromClient", [fileID, token, -1 if size is None else size]))]
        params += self._commonFields()
        headers = {"Content-Type": "application/octet-stream"}
        timeouts = self._timeouts(transfer=True)

        def handleAnswer(response: Response, url: str, deadline: Optional[float]) -> dict[str, Any]:
            if response.status != 200:
                raise self._readStatusError(response, url, "streamFromClient")
            return self._decodeResult(response, url, "streamFromClient", None)

        try:
            return self._send(None, handleAnswer, timeouts=timeouts, params=params, headers=headers, bodyFactory=bodyFor)
        finally:
            for fileObject in opened:
                fileObject.close()


def _tell(handle: IO[bytes]) -> Optional[int]:
    """Current position of a seekable file object, else None (the upload then cannot be resent)."""
    try:
        if handle.seekable():
            return handle.tell()
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _remainingSize(handle: IO[bytes], start: Optional[int]) -> Optional[int]:
    """Bytes left to read from a file object when it can tell, else None (sent chunked)."""
    if start is None:
        return None
    try:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(start)
        return max(0, end - start)
    except (AttributeError, OSError, ValueError):
        return None


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    """Read a stream of unknown size block by block (requests sends it with chunked encoding)."""
    while True:
        block = handle.read(CHUNK_SIZE)
        if not block:
            return
        yield block
