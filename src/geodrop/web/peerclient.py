"""Signed server-to-server requests (file server → file server, file server → directory)."""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import aiohttp
from yarl import URL

from geodrop.errors import NotFound, PeerUnavailable, error_for_status
from geodrop.protocol import peerauth


class PeerClient:
    """Sends JSON requests to other geodrop servers, signed as ``name``.

    Args:
        name: who this server is to its peers (``region:north``).
        key: the cluster's peer key.
        timeout_seconds: how long one request may take.
        ssl_context: how peers' HTTPS certificates are verified (the cluster's
            ``tls.ca_file``); None verifies against the system's authorities.
    """

    def __init__(
        self,
        name: str,
        key: bytes,
        *,
        timeout_seconds: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._name = name
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Never ssl=False: a peer whose certificate does not verify is unreachable.
            connector = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def call(self, method: str, url: str, payload: Any | None = None) -> Any:
        """Send one signed request and return its JSON answer.

        Raises:
            PeerUnavailable: the peer could not be reached or failed (503).
            NotFound: the peer answered 404 (passed on as such).
            GeodropError: the peer refused the request for another reason (same status).
        """
        body = b"" if payload is None else json.dumps(payload).encode()
        target = URL(url)
        headers = peerauth.sign_request(
            self._key,
            method=method,
            path_qs=target.raw_path_qs,
            peer=self._name,
            body=body,
            now=time.time(),
        )
        headers["Content-Type"] = "application/json"
        try:
            async with self._client().request(method, target, data=body, headers=headers) as r:
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(f"peer {target.host} unreachable: {exc}") from None
        answer = json.loads(text) if text else None
        if status < 300:
            return answer
        message = _error_message(answer) or f"peer answered {status}"
        if status == 404:
            raise NotFound(message)
        if status >= 500:
            raise PeerUnavailable(f"peer {target.host} failed: {message}")
        raise error_for_status(status, message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_message(answer: Any) -> str | None:
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None
