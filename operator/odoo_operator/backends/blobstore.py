"""One container of an Azure Blob Storage account, where backups are kept.

:class:`BlobStore` wraps ``azure.storage.blob.aio.ContainerClient`` with what the backup
engine needs and nothing more: streamed uploads with a bounded memory footprint and a
SHA-256 computed on the way, streamed downloads, listing and prefix deletion. It signs in
with a connection string (account key or SAS; Azurite in tests) or, on AKS, with
``DefaultAzureCredential`` and Workload Identity.

Large blobs are uploaded as staged blocks (``Put Block`` then ``Put Block List``): the data
never needs to be in memory at once, a few blocks are in flight to keep the connection busy,
and nothing is visible under the blob's name until the block list is committed. A blob may
have at most 50,000 blocks, so block size grows with the block count (see
:func:`block_size_for`): 4 MiB blocks up to 39 GiB, larger ones after that, up to 585 GiB.

Failures to reach or use the store raise :class:`BlobStoreUnavailable`, whose message names
the account and container and never a key, SAS token or connection string.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import ContainerClient

from odoo_operator import metrics

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
BLOCK_SIZE = 4 * MiB
# Azure's limit on committed blocks per blob.
MAX_BLOCKS = 50_000
# Blocks staged concurrently by one upload: enough to overlap the network round trip with
# reading the next block, few enough to keep memory at a handful of blocks.
UPLOAD_CONCURRENCY = 3
# Hashing a block this large in a worker thread (hashlib releases the GIL) lets the event
# loop keep the network busy meanwhile; small ones are cheaper to hash inline.
_THREAD_HASH_BYTES = 256 * 1024

T = TypeVar("T")


class BlobStoreUnavailable(Exception):  # noqa: N818 - names the state, as conditions do
    """The store cannot be reached, refuses the credentials, or has no such container."""


class AppendConflict(Exception):  # noqa: N818 - reads as what happened
    """An append blob grew between its read and an append conditioned on its length."""


class BlobNotFound(LookupError):  # noqa: N818 - reads as what happened
    """The named blob does not exist."""


class _Closeable(Protocol):
    async def close(self) -> None: ...


def block_size_for(index: int) -> int:
    """Size of the block at ``index`` (0-based) of a streamed upload.

    4 MiB for the first 10,000 blocks, then 8, 12, 16 and 20 MiB per further 10,000: a blob
    of unknown size fits in Azure's 50,000 blocks up to 585 GiB, while the common case
    keeps 4 MiB blocks and a small memory footprint.
    """
    if index < 0 or index >= MAX_BLOCKS:
        raise ValueError(f"block index {index} is outside 0..{MAX_BLOCKS - 1}")
    return BLOCK_SIZE * (1 + index // 10_000)


def _block_id(index: int) -> str:
    # Every block id of a blob must have the same length; the SDK base64-encodes it.
    return f"block-{index:06d}"


class BlobStore:
    """The backups container of one storage account.

    Create it with :meth:`from_connection_string` or :meth:`from_account_url`, use it as an
    async context manager or call :meth:`close`. Methods are safe to call concurrently.
    """

    def __init__(
        self,
        client: ContainerClient,
        *,
        account: str,
        secrets: tuple[str, ...] = (),
        credential: _Closeable | None = None,
    ) -> None:
        """Wrap ``client``; prefer the ``from_*`` constructors.

        ``secrets`` are strings scrubbed from every error message; ``credential``, when
        given, is closed with the store.
        """
        self._client = client
        self.account = account
        self.container = client.container_name
        self._secrets = tuple(secret for secret in secrets if secret)
        self._credential = credential

    @classmethod
    def from_connection_string(
        cls, conn_str: str, container: str, *, retry_total: int = 3, connection_timeout: int = 20
    ) -> BlobStore:
        """A store from an account connection string (account key or SAS), e.g. Azurite's.

        ``retry_total`` is the SDK's retry budget per request (transient errors, throttling),
        ``connection_timeout`` the seconds allowed to open a connection.
        """
        settings = _parse_connection_string(conn_str)
        account = settings.get("accountname") or _account_from_url(settings.get("blobendpoint", ""))
        try:
            client = ContainerClient.from_connection_string(
                conn_str, container, **_client_options(retry_total, connection_timeout)
            )
        except ValueError:
            # The SDK's message may quote the string, and with it the key.
            raise ValueError(
                f"the blob store connection string for container {container} cannot be parsed"
            ) from None
        secrets = (
            conn_str,
            settings.get("accountkey", ""),
            settings.get("sharedaccesssignature", ""),
        )
        return cls(client, account=account or "(unknown account)", secrets=secrets)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        container: str,
        credential: Any = None,
        *,
        retry_total: int = 3,
        connection_timeout: int = 20,
    ) -> BlobStore:
        """A store from ``https://<account>.blob.core.windows.net`` and an Entra credential.

        ``credential`` is an async token credential, by default
        ``azure.identity.aio.DefaultAzureCredential`` (which picks up Workload Identity on
        AKS). The store owns it and closes it in :meth:`close`.
        """
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        client = ContainerClient(
            account_url,
            container,
            credential=credential,
            **_client_options(retry_total, connection_timeout),
        )
        # An account URL may carry a SAS token in its query string.
        query = urlsplit(account_url).query
        return cls(
            client,
            account=_account_from_url(account_url),
            secrets=(query,),
            credential=credential if hasattr(credential, "close") else None,
        )

    def __repr__(self) -> str:
        return f"BlobStore(account={self.account!r}, container={self.container!r})"

    @property
    def location(self) -> str:
        """``account/container``, for messages."""
        return f"{self.account}/{self.container}"

    async def __aenter__(self) -> BlobStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (and the credential the store owns)."""
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def ensure_container(self) -> bool:
        """Create the container unless it exists; True when it was created."""
        # Look first: a SAS scoped to the container may read it but not create containers.
        if await self._call("exists", self._client.exists()):
            return False
        try:
            await self._call("create_container", self._client.create_container())
        except ResourceExistsError:  # created meanwhile by someone else
            return False
        return True

    async def check_reachable(self, timeout: float = 10.0) -> None:
        """Raise :class:`BlobStoreUnavailable` unless the store answers one request within
        ``timeout`` seconds, without the SDK's retries: deciding to fail over to another
        store must not wait out the retry budget of a region that is down."""
        try:
            await asyncio.wait_for(
                self._call("exists", self._client.exists(retry_total=0)), timeout
            )
        except TimeoutError:
            raise BlobStoreUnavailable(
                f"blob store {self.location} is unavailable: no answer within {timeout:g}s"
            ) from None

    async def upload_stream(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        metadata: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Store everything ``chunks`` yields as blob ``name``; return (size, SHA-256 hex).

        The data is cut into blocks (:func:`block_size_for`); at most
        :data:`UPLOAD_CONCURRENCY` blocks are staged at once, so memory stays at a few
        blocks whatever the size. The blob appears, replacing any previous one, only when
        the block list is committed after the last chunk; if ``chunks`` raises or the store
        fails, nothing is committed and the staged blocks expire on their own (Azure drops
        uncommitted blocks after a week). ``metadata`` is set on the blob together with
        ``sha256`` and ``size``.
        """
        blob = self._client.get_blob_client(name)
        digest = hashlib.sha256()
        size = 0
        block_ids: list[str] = []
        in_flight: set[asyncio.Task[None]] = set()
        buffer = bytearray()

        async def stage(block_id: str, block: bytes) -> None:
            await self._call("upload", blob.stage_block(block_id, block, length=len(block)))

        async def flush(block: bytes) -> None:
            nonlocal size
            if len(block) >= _THREAD_HASH_BYTES:
                await asyncio.to_thread(digest.update, block)
            else:
                digest.update(block)
            size += len(block)
            block_id = _block_id(len(block_ids))
            block_ids.append(block_id)
            while len(in_flight) >= UPLOAD_CONCURRENCY:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
                for task in done:
                    task.result()
            in_flight.add(asyncio.create_task(stage(block_id, block)))

        try:
            async for chunk in chunks:
                buffer += chunk
                while len(buffer) >= block_size_for(len(block_ids)):
                    limit = block_size_for(len(block_ids))
                    with memoryview(buffer) as view:  # one copy, not two
                        block = bytes(view[:limit])
                    del buffer[:limit]
                    await flush(block)
            if buffer:
                await flush(bytes(buffer))
                buffer = bytearray()
            if in_flight:
                await asyncio.gather(*in_flight)
                in_flight.clear()
            sha256 = digest.hexdigest()
            await self._call(
                "commit",
                blob.commit_block_list(
                    [BlobBlock(block_id=block_id) for block_id in block_ids],
                    metadata={**(metadata or {}), "sha256": sha256, "size": str(size)},
                ),
            )
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        return size, sha256

    async def upload_bytes(
        self, name: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> None:
        """Store ``data`` as blob ``name`` in one request, replacing any previous blob."""
        await self._call(
            "upload",
            self._client.upload_blob(name, data, overwrite=True, metadata=metadata or None),
        )

    async def download_stream(self, name: str) -> AsyncGenerator[bytes, None]:
        """The content of blob ``name``, in chunks of at most 4 MiB, fetched as consumed.

        Raises :class:`BlobNotFound` when it does not exist.
        """
        downloader = await self._call(
            "download", self._client.download_blob(name, max_concurrency=1)
        )
        iterator = downloader.chunks()
        while True:
            try:
                chunk = await self._call("download", iterator.__anext__())
            except StopAsyncIteration:
                return
            yield chunk

    async def read_bytes(self, name: str) -> bytes:
        """The whole content of a small blob; :class:`BlobNotFound` when it does not exist."""
        downloader = await self._call("download", self._client.download_blob(name))
        data: bytes = await self._call("download", downloader.readall())
        return data

    async def append(self, name: str, data: bytes, expected_length: int) -> None:
        """Append ``data`` to append blob ``name`` (created when absent and
        ``expected_length`` is 0), only if the blob is still ``expected_length`` bytes long:
        a writer that read an older length fails with :class:`AppendConflict` instead of
        interleaving its lines with another's."""
        blob = self._client.get_blob_client(name)
        if expected_length == 0:
            # Another writer may have created it: then the position condition decides.
            with contextlib.suppress(ResourceExistsError, ResourceModifiedError):
                await self._call("append", blob.create_append_blob(if_none_match="*"))
        try:
            await self._call("append", blob.append_block(data, appendpos_condition=expected_length))
        except ResourceModifiedError:
            raise AppendConflict(f"{name} grew since it was read") from None

    async def read_with_metadata(self, name: str) -> tuple[bytes, dict[str, str]]:
        """The content and metadata of a blob; :class:`BlobNotFound` when it does not exist."""
        downloader = await self._call("download", self._client.download_blob(name))
        data: bytes = await self._call("download", downloader.readall())
        return data, dict(downloader.properties.metadata or {})

    async def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        """Replace the metadata of blob ``name``."""
        await self._call("metadata", self._client.get_blob_client(name).set_blob_metadata(metadata))

    async def exists(self, name: str) -> bool:
        """Whether blob ``name`` exists."""
        result: bool = await self._call("exists", self._client.get_blob_client(name).exists())
        return result

    async def list_names(self, prefix: str = "") -> list[str]:
        """Names of the blobs whose name starts with ``prefix``, in the store's (lexical) order."""
        names: list[str] = []

        async def collect() -> None:
            async for name in self._client.list_blob_names(name_starts_with=prefix or None):
                names.append(name)

        await self._call("list", collect())
        return names

    async def delete(self, name: str) -> bool:
        """Delete blob ``name``; False when it was already gone."""
        try:
            await self._call("delete", self._client.delete_blob(name))
        except BlobNotFound:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose name starts with ``prefix``; return how many were deleted.

        An empty prefix is refused: it would empty the whole container.
        """
        if not prefix:
            raise ValueError("refusing to delete with an empty prefix (the whole container)")
        deleted = 0
        for name in await self.list_names(prefix):
            if await self.delete(name):
                deleted += 1
        return deleted

    async def immutability(self) -> str | None:
        """The container's write-once protection, in words, or None when it has none.

        Version-level immutability (WORM), a container immutability policy and a legal
        hold are reported. Stores that do not implement these properties (Azurite) and
        credentials not allowed to read them give None, logged at debug level.
        """
        try:
            properties = await self._call("properties", self._client.get_container_properties())
        except BlobStoreUnavailable as error:
            logger.debug("cannot read the immutability of %s: %s", self.location, error)
            return None
        found = []
        if getattr(properties, "immutable_storage_with_versioning_enabled", None):
            found.append("version-level immutability (WORM)")
        if getattr(properties, "has_immutability_policy", None):
            found.append("container immutability policy")
        if getattr(properties, "has_legal_hold", None):
            found.append("legal hold")
        return ", ".join(found) or None

    async def _call(self, operation: str, request: Awaitable[T]) -> T:
        """Await one SDK call, turning its errors into this module's. The call is timed
        as ``operation``, and an error counted with the SDK's own exception
        (:func:`odoo_operator.metrics.observe_call`)."""
        try:
            with metrics.observe_call("blob", operation):
                return await request
        except ResourceNotFoundError as error:
            if (getattr(error, "error_code", None) or "") == "ContainerNotFound":
                raise self._unavailable(
                    f"container {self.container} does not exist", error
                ) from None
            raise BlobNotFound(f"no such blob in {self.location}") from None
        except (ResourceExistsError, ResourceModifiedError):
            raise  # an answer (exists; a condition not met), not a failure: callers catch it
        except ClientAuthenticationError as error:
            raise self._unavailable("the credentials were refused", error) from None
        except HttpResponseError as error:
            raise self._unavailable(f"HTTP {error.status_code}", error) from None
        except AzureError as error:
            raise self._unavailable("the service cannot be reached", error) from None
        except OSError as error:
            raise self._unavailable("the service cannot be reached", error) from None

    def _unavailable(self, what: str, error: BaseException) -> BlobStoreUnavailable:
        detail = self._scrub(_first_line(error))
        reason = f"{what} ({detail})" if detail else what
        return BlobStoreUnavailable(f"blob store {self.location} is unavailable: {reason}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        # A SAS token's signature, wherever the SDK quoted a URL.
        text = re.sub(r"(?i)(sig=)[^&\s'\"]+", r"\1<redacted>", text)
        return re.sub(r"(?i)(AccountKey=)[^;\s'\"]+", r"\1<redacted>", text)


def _client_options(retry_total: int, connection_timeout: int) -> dict[str, Any]:
    # 4 MiB downloads per request (the SDK's first request would otherwise fetch 32 MiB)
    # keep a download's memory at one chunk.
    return {
        "retry_total": retry_total,
        "connection_timeout": connection_timeout,
        "max_single_get_size": BLOCK_SIZE,
        "max_chunk_get_size": BLOCK_SIZE,
    }


def _parse_connection_string(conn_str: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for item in conn_str.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            settings[key.strip().lower()] = value.strip()
    return settings


def _account_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.endswith(".blob.core.windows.net"):
        return host.split(".", 1)[0]
    # Azurite and other emulators put the account in the path: http://host:port/account
    path = parts.path.strip("/").split("/", 1)[0]
    return path or host or "(unknown account)"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(error).__name__
