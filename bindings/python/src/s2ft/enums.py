"""The header's enum-like #defines as Python IntEnums (the values are the C values)."""

import enum

from . import _capi


class DType(enum.IntEnum):
    """Element types libs2ft computes with (S2FT_F32, S2FT_F16, S2FT_BF16)."""

    F32 = _capi.S2FT_F32
    F16 = _capi.S2FT_F16
    BF16 = _capi.S2FT_BF16

    @property
    def itemsize(self):
        """Bytes per element."""
        return 4 if self is DType.F32 else 2


class DeviceType(enum.IntEnum):
    """Device kinds (DLPack's DLDeviceType values)."""

    CPU = _capi.S2FT_DEVICE_CPU
    CUDA = _capi.S2FT_DEVICE_CUDA


class Target(enum.IntEnum):
    """Trainable weights: O and DOWN are column-trained, V and UP row-trained."""

    O = _capi.S2FT_TARGET_O  # noqa: E741 (the header's name)
    V = _capi.S2FT_TARGET_V
    DOWN = _capi.S2FT_TARGET_DOWN
    UP = _capi.S2FT_TARGET_UP

    @property
    def bit(self):
        """This target's bit in a target mask (S2FT_TARGET_BIT)."""
        return 1 << int(self)

    @property
    def axis(self):
        """The axis of the weight this target trains: COLUMNS for O and DOWN, ROWS for V and UP."""
        return Axis.COLUMNS if self in (Target.O, Target.DOWN) else Axis.ROWS


class Weight(enum.IntEnum):
    """The seven projection weights of a layer (S2FT_WEIGHT_*), in one id space with Target (the four targets keep their ids).

    Unstructured sparse entries of an adapter (Adapter.set_sparse) name
    weights by these.
    """

    O = _capi.S2FT_WEIGHT_O  # noqa: E741 (the header's name)
    V = _capi.S2FT_WEIGHT_V
    DOWN = _capi.S2FT_WEIGHT_DOWN
    UP = _capi.S2FT_WEIGHT_UP
    Q = _capi.S2FT_WEIGHT_Q
    K = _capi.S2FT_WEIGHT_K
    GATE = _capi.S2FT_WEIGHT_GATE

    @property
    def bit(self):
        """This weight's bit in a weight mask (S2FT_WEIGHT_BIT)."""
        return 1 << int(self)


class Axis(enum.IntEnum):
    """Slice axes: trained columns (inputs) or rows (outputs) of W."""

    COLUMNS = _capi.S2FT_AXIS_COLUMNS
    ROWS = _capi.S2FT_AXIS_ROWS


class StatKind(enum.IntEnum):
    """Statistics kinds of Statistics.get."""

    WEIGHT = _capi.S2FT_STAT_WEIGHT
    ACTIVATION = _capi.S2FT_STAT_ACTIVATION
    GRADIENT = _capi.S2FT_STAT_GRADIENT
    PRINCIPAL = _capi.S2FT_STAT_PRINCIPAL


class Strategy(enum.IntEnum):
    """Selection strategies (the paper's S2FT-R/W/A/S/G, and LIFT's principal weights: Statistics.add_principal)."""

    RANDOM = _capi.S2FT_STRATEGY_RANDOM
    WEIGHT = _capi.S2FT_STRATEGY_WEIGHT
    ACTIVATION = _capi.S2FT_STRATEGY_ACTIVATION
    WEIGHT_ACT = _capi.S2FT_STRATEGY_WEIGHT_ACT
    GRADIENT = _capi.S2FT_STRATEGY_GRADIENT
    PRINCIPAL = _capi.S2FT_STRATEGY_PRINCIPAL


class Order(enum.IntEnum):
    """Whether selection picks the highest or the lowest scores."""

    LARGEST = _capi.S2FT_ORDER_LARGEST
    SMALLEST = _capi.S2FT_ORDER_SMALLEST


class Allocation(enum.IntEnum):
    """How a budget is spread: the same per layer, or ranked across all layers."""

    PER_LAYER = _capi.S2FT_ALLOCATE_PER_LAYER
    GLOBAL = _capi.S2FT_ALLOCATE_GLOBAL


class HeadGranularity(enum.IntEnum):
    """O units: whole KV groups (contiguous after permuting) or single query heads."""

    BY_GROUP = _capi.S2FT_HEADS_BY_GROUP
    SINGLE = _capi.S2FT_HEADS_SINGLE


class PermKind(enum.IntEnum):
    """Which co-permutation Selection.permutation returns."""

    HEADS = _capi.S2FT_PERM_HEADS
    KV_HEADS = _capi.S2FT_PERM_KV_HEADS
    CHANNELS = _capi.S2FT_PERM_CHANNELS


class Direction(enum.IntEnum):
    """permute(): base order to selected-first (FORWARD), or back (INVERSE)."""

    FORWARD = _capi.S2FT_PERMUTE_FORWARD
    INVERSE = _capi.S2FT_PERMUTE_INVERSE


class OptimizerKind(enum.IntEnum):
    """Optimizers on slices and sparse entries."""

    ADAMW = _capi.S2FT_OPTIMIZER_ADAMW
    SGD = _capi.S2FT_OPTIMIZER_SGD
    SM3 = _capi.S2FT_OPTIMIZER_SM3


class LiftMethod(enum.IntEnum):
    """How lift_select computes a weight's rank-r approximation."""

    EXACT = _capi.S2FT_LIFT_EXACT
    RANDOMIZED = _capi.S2FT_LIFT_RANDOMIZED


class SpielRegrow(enum.IntEnum):
    """How a SpIEL schedule regrows entries: by accumulated gradient (AG) or by a row x column score (MA)."""

    AG = _capi.S2FT_SPIEL_AG
    MA = _capi.S2FT_SPIEL_MA


class SpielDecay(enum.IntEnum):
    """A SpIEL schedule's replacement-rate decay: p0 (1 - t/T) or p0 (1 + cos(pi t/T)) / 2."""

    LINEAR = _capi.S2FT_SPIEL_DECAY_LINEAR
    COSINE = _capi.S2FT_SPIEL_DECAY_COSINE


class SpielMaSource(enum.IntEnum):
    """Where SpIEL-MA's row and column scores come from: the SM3 optimizer's accumulators or sums of dy^2 and x^2."""

    OPTIMIZER = _capi.S2FT_SPIEL_MA_OPTIMIZER
    ACTIVATIONS = _capi.S2FT_SPIEL_MA_ACTIVATIONS


class DeltaPath(enum.IntEnum):
    """How forward_mixed adds a column/row adapter's delta (Context.set_delta_path)."""

    AUTO = _capi.S2FT_DELTA_PATH_AUTO
    DENSE = _capi.S2FT_DELTA_PATH_DENSE
    SPARSE = _capi.S2FT_DELTA_PATH_SPARSE
