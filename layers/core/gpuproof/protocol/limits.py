"""Every bound on what a request or report may say: physical ceilings, sizes, lengths, depth.

One place so the wire models, the envelope and the docs name the same numbers. A ceiling is set
well above any machine that exists (so an honest host never meets it) and far below where a
figure could overflow a float, a DynamoDB number or a transaction.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

KIB, MIB, GIB, TIB, PIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40, 1 << 50

# -- the envelope -------------------------------------------------------------------------------
MAX_BODY_BYTES = 1 * MIB
# Nesting of objects and arrays in a request body. The deepest wire path (a report's proof
# openings: submission.signed_report.report.proof.openings[].openings[].a_row[]) is 9 levels;
# json and pydantic recurse per level, so a 1 MiB body of "[" must never reach them.
MAX_JSON_DEPTH = 32

# -- GPUs per machine -----------------------------------------------------------------------------
# The wire ceiling; the configured limit (template parameter MaxGpusPerMachine, env
# MAX_GPUS_PER_MACHINE) may only be lower. A machine's GpuUuids claims plus the report and machine
# updates are one DynamoDB transaction (at most 100 items), so the ceiling stays well below 98.
PROTOCOL_MAX_GPUS = 64
DEFAULT_MAX_GPUS_PER_MACHINE = 16
# Items record_verification writes besides the GPU claims: the report and the machine.
VERIFICATION_FIXED_ITEMS = 2
DYNAMODB_MAX_TRANSACTION_ITEMS = 100

# -- host -----------------------------------------------------------------------------------------
MAX_CPU_CORES = 4096  # logical CPUs; the largest single-image servers have 1,920 (32 x 60)
MAX_CLOCK_MHZ = 10_000  # CPU, SM and memory clocks; nothing ships above 6,200 MHz
MAX_RAM_BYTES = 64 * TIB  # the largest single-image servers hold 32 TiB
MAX_DISK_BYTES = 16 * PIB  # one filesystem

# -- one GPU --------------------------------------------------------------------------------------
MAX_GPU_INDEX = 255  # as ProofParams.gpu_index
MAX_GPU_MEMORY_BYTES = 4 * TIB  # B300: 288 GB
MAX_SM_COUNT = 4096  # B200: 148 per die
MAX_CUDA_CORES = 1 << 20  # B200: ~18,000
MAX_GPU_POWER_W = 10_000.0  # one board; GB300: 1,400 W
MAX_PCIE_GEN = 16
MAX_PCIE_WIDTH = 64

# -- telemetry ------------------------------------------------------------------------------------
MIN_TEMPERATURE_C = -100.0
MAX_TEMPERATURE_C = 250.0  # a sensor reads ~90-110 C before throttling; beyond this it is broken
MAX_PID = 1 << 22  # Linux pid_max ceiling
MAX_LOAD_AVERAGE = 1_000_000.0
MAX_PROCESSES_PER_GPU = 1024
MAX_HEARTBEAT_GPUS = PROTOCOL_MAX_GPUS
MAX_HEALTH_COUNT = 1 << 32  # ECC error counters, retired pages, remapped rows (NVML's are 32/64-bit)
MAX_XID_EVENTS = 64  # XID events reported per GPU in one heartbeat (the rest are counted)
MAX_XID = 1 << 16  # XID codes are small integers (NVIDIA lists fewer than 200)
MAX_THROTTLE_REASONS = 16

# -- benchmarks, times ----------------------------------------------------------------------------
MAX_BENCHMARK_VALUE = 1e12  # TFLOPS, GB/s, ...: a million times today's best figures
MAX_BENCHMARK_REPEATS = 1_000_000
MAX_BENCHMARKS = 1024  # per report
MAX_UNIX_TIME_S = 1 << 34  # seconds since 1970; the year 2514
MAX_DURATION_S = 1e7  # a self-reported elapsed time (informative only)

# -- path and query numbers ----------------------------------------------------------------------
MAX_ROUND_NO = 1_000_000  # committee rounds of one machine (one per redraw)
MAX_FEED_POSITION = 2**63 - 1  # block x 100000 + extrinsic index
MAX_CHALLENGE_ID_CHARS = 64

# -- strings and lists ----------------------------------------------------------------------------
MAX_NAME_CHARS = 256  # model names, device names, units, versions, OS and kernel strings
MAX_TEXT_CHARS = 2048  # one error, note or disagreement
MAX_LIST_ITEMS = 256  # notes, errors, hints, preload entries, hashed libraries
MAX_GPU_UUID_CHARS = 96  # raw, before normalisation ("GPU-" + 36)

# -- the proof of throughput ----------------------------------------------------------------------
MAX_PROOF_STEPS = 100_000  # as ProofParams.steps: roots per GPU
MAX_PROOF_CHECKS = 4096  # as ProofParams.checks: pairs (and openings) per GPU
MAX_PROOF_ROW = 2**22  # as ProofParams.n
MAX_PROOF_D = 2**16  # as ProofParams.d: entries of an opened row
MAX_MERKLE_DEPTH = 32
# |A| <= q//2 <= 7 and |C| <= d * (q//2)**2 < 2**24 (docs/protocol.md "Exactness"); a wire entry
# outside this is refused as a value before any numpy conversion.
MAX_PROOF_ENTRY = 2**24

# -- the verification record ------------------------------------------------------------------------
# Reasons one check of the verify worker lists; beyond them it counts the rest per code
# (logic/verification.py `listed`), so the report item stays far below DynamoDB's 400 KB.
MAX_CHECK_REASONS = 32

# -- the capacity phase (protocol/capacity, docs/protocol.md "Capacity phase") ---------------------
MAX_CAPACITY_BYTES = 64 * TIB  # claimed bytes of one target (a GPU or host RAM)
MAX_CAPACITY_D = 8192  # entries (bytes) of a fill row
MAX_CAPACITY_ROWS = 2**32  # rows of a fill: the Merkle depth stays <= 32
MAX_CAPACITY_CHUNK_ROWS = 1024  # rows of one scan item (an opened spot sends them all)
MAX_CAPACITY_SAMPLES = 2**22  # rows one sample round reads
MAX_CAPACITY_SPOTS = 64  # items opened per round and target
MAX_CAPACITY_WALKS = 256  # walks opened per target
MAX_CAPACITY_COMMIT_STRIDE = 4  # layers committed every 1..4 stages: a walk step opens <= 16 parents
MAX_CAPACITY_ROUNDS = 64
MAX_CAPACITY_SWEEPS = 1024  # sweeps of one bandwidth round (its answer carries one root per sweep)
# The openings (the binary transcript of protocol/capacity/wire.py) kept in the challenge's
# DynamoDB item (400 KB) when sent inline: the CPU claim's test-size phase fits; GPU-size
# openings (5.3 MB per H100) are uploaded out of band (protocol/delivery.py's presigned POST).
MAX_CAPACITY_OPENINGS_STORED_BYTES = 256 * KIB
# The uploaded openings are bounded by the size the params imply (`wire.max_size`) and never more
# than this: 64 GPUs of the largest reference model (B200) + 2.2 TiB of host RAM need 390.7 MiB with
# every third layer committed (8 parents a walk step; 330.1 MiB at stride 2, 288.4 MiB with walks
# v1's one path), and the verify worker holds them once in memory (decoded as views, not copies).
MAX_CAPACITY_OPENINGS_BYTES = 448 * MIB

# -- reusable field types ---------------------------------------------------------------------------
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


# Integers are strict where they count or measure: 1.0 and true are not numbers of cores.
Bytes = Annotated[int, Field(strict=True, ge=0, le=MAX_DISK_BYTES)]
ClockMhz = Annotated[int, Field(strict=True, ge=0, le=MAX_CLOCK_MHZ)]
UnixTime = Annotated[int, Field(strict=True, ge=0, le=MAX_UNIX_TIME_S)]
ProofEntry = Annotated[int, Field(strict=True, ge=-MAX_PROOF_ENTRY, le=MAX_PROOF_ENTRY)]
