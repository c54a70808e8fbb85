//! Capability dropping: bounding, ambient, inheritable, permitted and
//! effective sets are emptied and the securebits are locked so that even a
//! process running as uid 0 inside the sandbox regains nothing on exec.

use ::caps::CapSet;

use super::sys;

use super::error::{Cause, StepResult, failed};

// <linux/securebits.h>
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

/// Securebits set before dropping capabilities.
pub(crate) const SECUREBITS: libc::c_ulong = SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_NO_SETUID_FIXUP
    | SECBIT_NO_SETUID_FIXUP_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// Empty every capability set of the calling process and verify the result.
pub(crate) fn drop_all() -> StepResult<()> {
    // Bounding set first: needs CAP_SETPCAP, which we still hold. Drop every
    // capability the kernel knows (until EINVAL), including ones newer than
    // the caps crate. One prctl per capability; the sets are read back below.
    for cap in 0..64u32 {
        if !sys::capbset_drop(cap).map_err(failed(format!("PR_CAPBSET_DROP {cap}")))? {
            break;
        }
    }
    sys::set_securebits(SECUREBITS).map_err(failed("PR_SET_SECUREBITS"))?;
    sys::ambient_clear_all().map_err(failed("clear ambient set"))?;
    // Effective, permitted and inheritable in one capset(2).
    sys::capset_empty().map_err(failed("capset"))?;
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
        CapSet::Bounding,
    ] {
        let left = ::caps::read(None, set).map_err(failed(format!("read {set:?}")))?;
        if !left.is_empty() {
            return Err(Cause::refused(format!(
                "capability set {set:?} still holds {left:?}"
            )));
        }
    }
    Ok(())
}
