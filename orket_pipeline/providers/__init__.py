"""Providers: where model output comes from, and the specs that name them on the command line.

See `_spec` for the spec syntax and `_replay` for the cassette format.
"""

from __future__ import annotations

from .._exceptions import ProviderCallError as ProviderCallError
from .._exceptions import ProviderConnectionError as ProviderConnectionError
from .._exceptions import ProviderResponseError as ProviderResponseError
from .._exceptions import ProviderTimeoutError as ProviderTimeoutError
from .._exceptions import ReplayError as ReplayError
from ._base import Chunk as Chunk
from ._base import Provider as Provider
from ._base import ProviderOptions as ProviderOptions
from ._http import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._http import TokenUsage as TokenUsage
from ._ollama import DEFAULT_OLLAMA_URL as DEFAULT_OLLAMA_URL
from ._ollama import OllamaProvider as OllamaProvider
from ._openai import OpenAIProvider as OpenAIProvider
from ._reading import ResponseLimits as ResponseLimits
from ._replay import ReplayChunk as ReplayChunk
from ._replay import ReplayFault as ReplayFault
from ._replay import ReplayProvider as ReplayProvider
from ._replay import ReplayRecord as ReplayRecord
from ._retry import RetryPolicy as RetryPolicy
from ._spec import load_provider as load_provider

__all__ = [
    "Chunk",
    "DEFAULT_OLLAMA_URL",
    "DEFAULT_TIMEOUT",
    "OllamaProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderOptions",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ReplayChunk",
    "ReplayError",
    "ReplayFault",
    "ReplayProvider",
    "ReplayRecord",
    "ResponseLimits",
    "RetryPolicy",
    "TokenUsage",
    "load_provider",
]
