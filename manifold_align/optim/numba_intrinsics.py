"""Three LLVM instructions that numba's CPU target does not offer, as numba intrinsics.

* [claim][manifold_align.optim.numba_intrinsics.claim]: an atomic fetch-and-add on an
  int64 array element (numba has atomics only on CUDA), so that threads running one
  compiled function can hand out work among themselves without a lock;
* [pointer][manifold_align.optim.numba_intrinsics.pointer] and
  [words][manifold_align.optim.numba_intrinsics.words]: an address held in an int64, or a
  ``void *``, as a typed pointer that ``numba.carray`` can view as an array: how a
  ``numba.cfunc`` called from C (an OpenMP thread) reaches arrays it is given by address.

Importing this module imports numba (and raises where it cannot).
"""

from __future__ import annotations

from numba.core import types
from numba.extending import intrinsic

__all__ = ["claim", "pointer", "words"]


@intrinsic
def claim(typingctx, counter, amount):
    """``claim(counter, amount)``: add ``amount`` to ``counter[0]`` (a contiguous int64
    array) atomically and return the value it had before."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        step = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", array.data, step, "monotonic")

    return types.int64(counter, amount), codegen


@intrinsic
def pointer(typingctx, address, dtype):
    """``pointer(address, dtype)``: the integer ``address`` as a pointer to ``dtype``
    (a numba scalar type, e.g. ``numba.float32``)."""
    if not isinstance(address, types.Integer):
        return None
    target = types.CPointer(dtype.instance_type)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(target))

    return target(address, dtype), codegen


@intrinsic
def words(typingctx, data):
    """``words(data)``: a ``void *`` as a pointer to int64."""
    if data != types.voidptr:
        return None
    target = types.CPointer(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(data), codegen
