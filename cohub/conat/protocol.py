"""Names and numbers of the Conat wire protocol, shared by the router and the client."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# socket.io events, client -> server
SUBSCRIBE: Final = "subscribe"
UNSUBSCRIBE: Final = "unsubscribe"
SUBSCRIPTIONS: Final = "subscriptions"
PUBLISH: Final = "publish"
WAIT_FOR_INTEREST: Final = "wait-for-interest"
STATS: Final = "stats"
# server -> client
INFO: Final = "info"
PERMISSION: Final = "permission"

CLIENT_EVENTS: Final = frozenset(
    {SUBSCRIBE, UNSUBSCRIBE, SUBSCRIPTIONS, PUBLISH, WAIT_FOR_INTEREST, STATS}
)


class Encoding(IntEnum):
    MSGPACK = 0
    JSON = 1


# Sizes (conat.md section 5).
MAX_PAYLOAD: Final = 8_000_000
MAX_HTTP_BUFFER_SIZE: Final = 8_000_000
CHUNK_SIZE: Final = max(1000, MAX_PAYLOAD - 100_000)
MAX_HEADERS_BYTES: Final = 64 * 1024
PARTIAL_MESSAGE_TTL_S: Final = 120.0
# What one receiver (one subscription of a client) holds in unfinished chunked messages:
# anyone who may publish to a subject could otherwise fill a subscriber's memory with first
# chunks that never get a last one. Room for three 20 MB messages in flight at once.
PARTIAL_MESSAGE_MAX_BYTES: Final = 64_000_000

# Headers.
REPLY_HEADER: Final = "CN-Reply"
ERROR_HEADER: Final = "error"
ERROR_CODE_HEADER: Final = "code"

# Timeouts (seconds).
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
DEFAULT_WAIT_FOR_INTEREST: Final = 30.0
MAX_WAIT_FOR_INTEREST: Final = 90.0
PUBLISH_ACK_TIMEOUT: Final = 30.0

# Hubs publish here after a collaborator change; routers drop cached decisions at once.
PERMISSIONS_CHANGED: Final = "sys.conat.permissions.changed"
# Routers also check on their own: subscriptions every PERMISSION_SWEEP_S (through a decision
# cache of PERMISSION_CACHE_S), identities every REAUTHENTICATE_S, so a change made where no
# hub announced it still takes effect within a minute.
PERMISSION_SWEEP_S: Final = 15.0
PERMISSION_CACHE_S: Final = 45.0
REAUTHENTICATE_S: Final = 60.0

# A request here (hubs and admins only: it is under sys.) is answered by every router with
# its per-connection figures, including what clients report in their ``stats`` events.
CONNECTIONS_SUBJECT: Final = "sys.conat.connections"
STATS_INTERVAL_S: Final = 5.0

# Queue group used by services (load-balanced).
SERVICE_QUEUE: Final = "0"

# Limits (conat.md section 3).
MAX_CONNECTIONS_PER_USER: Final = 100
MAX_CONNECTIONS_PER_SERVER: Final = 10_000
MAX_SUBSCRIPTIONS_PER_SOCKET: Final = 500
MAX_SUBSCRIPTIONS_PER_HUB: Final = 15_000
# Pending wait-for-interest requests one socket may hold (each waits up to 90 s).
MAX_WAITS_PER_SOCKET: Final = 100

# The clusterName in info when none is configured (conat.md section 1).
DEFAULT_CLUSTER_NAME: Final = "default"


# The project API (conat.md section 7): what a project server answers on, and the bounds of
# exec and file calls that both the hub (checking callers) and the project server (enforcing
# them) apply.
def project_api_subject(project_id: str, compute_server_id: str = "-") -> str:
    return f"project.{project_id}.{compute_server_id}.api.-"


# The project runner's service (start, stop, copy); its first token gives accounts and
# projects no permission, so only hubs reach it.
PROJECT_RUNNER_SUBJECT: Final = "project-runner.api"

PROJECT_EXEC_TIMEOUT_DEFAULT_S: Final = 10
PROJECT_EXEC_TIMEOUT_MAX_S: Final = 3600
PROJECT_EXEC_OUTPUT_DEFAULT: Final = 1_000_000
PROJECT_EXEC_OUTPUT_MAX: Final = 10_000_000
PROJECT_FILE_MAX_BYTES: Final = 5_000_000
