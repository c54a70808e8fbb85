//! The receipt ledger's log file in a local state store (RFC 0011, "The
//! local log file"): `ledger.log` in the state directory, a 64-byte header
//! naming the store, then one self-delimiting record per entry. An append
//! is one `pwrite` at the end and one `fdatasync`, made under the store's
//! write lock; nothing else is opened, parsed or recovered, which is what
//! keeps a run's append within one disk flush.
//!
//! Record layout (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `CSCE` |
//! | 4 | total record length `L` |
//! | 8 | index |
//! | 32 | leaf hash of the receipt |
//! | 32 | leaf hash of the entry before (zeros for the first) |
//! | 2 | length `A` of `appended_at` |
//! | A | `appended_at` (UTF-8) |
//! | L − 98 − A | the receipt's canonical bytes |
//! | 8 | first 8 bytes of SHA-256 of everything above |
//! | 4 | `L` again |
//! | 4 | `ECSC` |
//!
//! The trailer lets an append find the last record from the end of the
//! file; the checksum tells a record torn by a crash (never reported
//! written) from a complete one. Whether a record's *content* was edited is
//! the ledger verifier's question (leaf hashes, chain, signed checkpoints),
//! not this module's: a rewritten record with a fixed-up checksum parses.

use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};

use std::os::unix::fs::{FileExt, MetadataExt};

/// File name of the log inside the state directory.
pub const LOG_FILE: &str = "ledger.log";
/// Length of the header: magic, the store id (32 lowercase hex digits),
/// zero padding.
pub const HEADER_LEN: usize = 64;
const HEADER_MAGIC: &[u8; 8] = b"CSCLOG01";
const RECORD_MAGIC: &[u8; 4] = b"CSCE";
const END_MAGIC: &[u8; 4] = b"ECSC";
/// Bytes of a record before `appended_at`.
const FIXED: usize = 4 + 4 + 8 + 32 + 32 + 2;
/// Checksum, length and end magic.
const TRAILER: usize = 8 + 4 + 4;
/// Largest record accepted when reading (a receipt is far smaller; the cap
/// bounds what a hostile file can make csc allocate).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position the entry was appended at (0-based).
    pub index: u64,
    /// Recorded leaf hash of `receipt`.
    pub leaf_hash: [u8; 32],
    /// Recorded leaf hash of the entry before (zeros for the first).
    pub prev_leaf_hash: [u8; 32],
    /// The receipt's canonical JSON bytes (signature included).
    pub receipt: Vec<u8>,
    /// When it was appended.
    pub appended_at: String,
}

/// The bytes of one record.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, String> {
    let at = entry.appended_at.as_bytes();
    let at_len = u16::try_from(at.len()).map_err(|_| "appended_at is too long".to_owned())?;
    let len = FIXED + at.len() + entry.receipt.len() + TRAILER;
    if len > MAX_RECORD {
        return Err(format!(
            "a receipt of {} bytes is larger than a ledger record may be ({MAX_RECORD} bytes)",
            entry.receipt.len()
        ));
    }
    let len32 = u32::try_from(len).map_err(|_| "record too long".to_owned())?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.leaf_hash);
    out.extend_from_slice(&entry.prev_leaf_hash);
    out.extend_from_slice(&at_len.to_le_bytes());
    out.extend_from_slice(at);
    out.extend_from_slice(&entry.receipt);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum[..8]);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(END_MAGIC);
    Ok(out)
}

/// The record that `bytes` holds exactly, or why it is not one.
pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
    let len = bytes.len();
    if !(FIXED + TRAILER..=MAX_RECORD).contains(&len) {
        return Err(format!("record length {len} is out of range"));
    }
    if &bytes[..4] != RECORD_MAGIC || &bytes[len - 4..] != END_MAGIC {
        return Err("record framing is missing".to_owned());
    }
    let le32 = |b: &[u8]| b.try_into().map(u32::from_le_bytes).unwrap_or(u32::MAX) as usize;
    if le32(&bytes[4..8]) != len || le32(&bytes[len - 8..len - 4]) != len {
        return Err("record lengths disagree".to_owned());
    }
    let body = &bytes[..len - TRAILER];
    if Sha256::digest(body)[..8] != bytes[len - TRAILER..len - 8] {
        return Err("record checksum does not match (torn or damaged)".to_owned());
    }
    let hash = |b: &[u8]| -> [u8; 32] { b.try_into().unwrap_or([0; 32]) };
    let at_len = usize::from(u16::from_le_bytes([bytes[80], bytes[81]]));
    if FIXED + at_len > body.len() {
        return Err("appended_at runs past the record".to_owned());
    }
    let appended_at = std::str::from_utf8(&body[FIXED..FIXED + at_len])
        .map_err(|_| "appended_at is not UTF-8".to_owned())?
        .to_owned();
    Ok(Entry {
        index: u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0xff; 8])),
        leaf_hash: hash(&bytes[16..48]),
        prev_leaf_hash: hash(&bytes[48..80]),
        receipt: body[FIXED + at_len..].to_vec(),
        appended_at,
    })
}

/// The entries of a whole log file's bytes (header checked for shape
/// only), strictly: any byte that is not part of a complete entry is an
/// error. For tools and tests that read or rewrite a log offline.
pub fn decode_file(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != HEADER_MAGIC {
        return Err(format!("not a {LOG_FILE} (bad header)"));
    }
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let len = bytes
            .get(at + 4..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or_else(|| format!("byte {at}: incomplete entry"))?;
        let record = bytes
            .get(at..at.saturating_add(len))
            .ok_or_else(|| format!("byte {at}: incomplete entry"))?;
        out.push(decode(record).map_err(|e| format!("byte {at}: {e}"))?);
        at += len;
    }
    Ok(out)
}

/// A whole log file: `header` (the first [`HEADER_LEN`] bytes of a log)
/// and `entries` (the inverse of [`decode_file`]).
pub fn encode_file(header: &[u8], entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut out = header.get(..HEADER_LEN).ok_or("short header")?.to_vec();
    for e in entries {
        out.extend_from_slice(&encode(e)?);
    }
    Ok(out)
}

/// The header of a log of store `store_id`.
fn header(store_id: &str) -> Result<[u8; HEADER_LEN], String> {
    if store_id.len() != 32 || !store_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("store id {store_id:?} is not 32 hex digits"));
    }
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(HEADER_MAGIC);
    h[8..40].copy_from_slice(store_id.as_bytes());
    Ok(h)
}

/// Why [`LedgerLog::open`] refused a log that exists.
#[derive(Debug)]
pub enum OpenError {
    /// Not a regular file private to csc's effective uid: what is wrong
    /// with it (the state store refuses it as insecure).
    Insecure(String),
    /// Unreadable, or not this store's log (the store refuses it as lost).
    Bad(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Insecure(problem) => write!(f, "{LOG_FILE}: {problem}"),
            OpenError::Bad(message) => f.write_str(message),
        }
    }
}

/// An open log file.
#[derive(Debug)]
pub struct LedgerLog {
    file: std::fs::File,
}

/// Where the last complete record ends, and what it says.
struct Tail {
    end: u64,
    next_index: u64,
    last_leaf: [u8; 32],
}

impl LedgerLog {
    /// Create the log of store `store_id` in `dir` holding `entries`, under
    /// a temporary name renamed over [`LOG_FILE`] once flushed (the caller
    /// holds the store's lock and syncs the directory).
    pub fn create(dir: &std::fs::File, store_id: &str, entries: &[Entry]) -> Result<(), String> {
        use nix::fcntl::{OFlag, openat, renameat};
        let tmp = ".ledger.log.csc-tmp";
        let _ = nix::unistd::unlinkat(dir, tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
        let fd = openat(
            dir,
            tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| format!("cannot create {tmp}: {e}"))?;
        let file = std::fs::File::from(fd);
        let mut bytes = header(store_id)?.to_vec();
        for e in entries {
            bytes.extend_from_slice(&encode(e)?);
        }
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {tmp}: {e}"))?;
        renameat(dir, tmp, dir, LOG_FILE).map_err(|e| format!("cannot rename {tmp}: {e}"))
    }

    /// Open [`LOG_FILE`] in `dir` (no symlink followed) and check it on its
    /// descriptor: a regular file owned by csc's effective uid, not
    /// writable by group or others ([`OpenError::Insecure`] otherwise),
    /// whose header names `store_id`. `Ok(None)` if it does not exist.
    pub fn open(dir: &std::fs::File, store_id: &str) -> Result<Option<LedgerLog>, OpenError> {
        use OpenError::{Bad, Insecure};
        use nix::fcntl::{OFlag, openat};
        let fd = match openat(
            dir,
            LOG_FILE,
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(nix::errno::Errno::ELOOP) => {
                return Err(Insecure("not a regular file (symlink)".to_owned()));
            }
            Err(e) => return Err(Bad(format!("cannot open {LOG_FILE}: {e}"))),
        };
        let file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Bad(format!("cannot stat {LOG_FILE}: {e}")))?;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.file_type().is_file() {
            return Err(Insecure(
                "not a regular file (symlink or special file)".to_owned(),
            ));
        }
        if meta.uid() != euid {
            return Err(Insecure(format!("owned by uid {}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Insecure(format!(
                "mode {:o} is writable by group or others",
                meta.mode() & 0o7777
            )));
        }
        let mut h = [0u8; HEADER_LEN];
        file.read_exact_at(&mut h, 0)
            .map_err(|_| Bad(format!("{LOG_FILE} has no complete header")))?;
        if h != header(store_id).map_err(Bad)? {
            let named = String::from_utf8_lossy(&h[8..40]).into_owned();
            return Err(Bad(if &h[..8] == HEADER_MAGIC {
                format!("{LOG_FILE} belongs to store {named}, not {store_id}")
            } else {
                format!("{LOG_FILE} is not a csc ledger log (bad header)")
            }));
        }
        Ok(Some(LedgerLog { file }))
    }

    /// Whether anything follows the header.
    pub fn has_entries(&self) -> Result<bool, String> {
        Ok(self.size()? > HEADER_LEN as u64)
    }

    /// Append one entry after the last complete record and flush it with
    /// one `fdatasync`; returns its index. The caller holds the store's
    /// write lock. Refused when [`LOG_FILE`] in `dir` is no longer this
    /// file (replaced while open). A torn final record (an append a crash
    /// interrupted: never reported written) is cut off first; anything
    /// else unparseable at the end is refused, never cut.
    pub fn append(
        &mut self,
        dir: &std::fs::File,
        leaf: &[u8; 32],
        receipt: &[u8],
        now: &str,
    ) -> Result<u64, String> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| format!("cannot stat {LOG_FILE}: {e}"))?;
        match nix::sys::stat::fstatat(dir, LOG_FILE, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_dev == meta.dev() && st.st_ino == meta.ino() => {}
            Ok(_) => return Err(format!("{LOG_FILE} was replaced while the store was open")),
            Err(e) => return Err(format!("{LOG_FILE} is gone while the store was open: {e}")),
        }
        let tail = self.tail(dir, meta.len())?;
        let record = encode(&Entry {
            index: tail.next_index,
            leaf_hash: *leaf,
            prev_leaf_hash: tail.last_leaf,
            receipt: receipt.to_vec(),
            appended_at: now.to_owned(),
        })?;
        let written = self
            .file
            .write_all_at(&record, tail.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Not reported written; a torn rest is cut by the next append.
            let _ = self.file.set_len(tail.end);
            return Err(format!("cannot append to {LOG_FILE}: {e}"));
        }
        Ok(tail.next_index)
    }

    /// The last complete record, read from the end of a file of `size`
    /// bytes (the torn-tail recovery otherwise).
    fn tail(&self, dir: &std::fs::File, size: u64) -> Result<Tail, String> {
        let header = HEADER_LEN as u64;
        if size < header {
            return Err(format!("{LOG_FILE} is shorter than its header"));
        }
        if size == header {
            return Ok(Tail {
                end: size,
                next_index: 0,
                last_leaf: [0; 32],
            });
        }
        if let Some(entry) = self.record_ending_at(size) {
            return Ok(Tail {
                end: size,
                next_index: entry.index.saturating_add(1),
                last_leaf: entry.leaf_hash,
            });
        }
        self.cut_torn_tail(dir, size)
    }

    /// The complete record that ends at `end`, if there is one.
    fn record_ending_at(&self, end: u64) -> Option<Entry> {
        let mut trailer = [0u8; 8];
        self.file
            .read_exact_at(&mut trailer, end.checked_sub(8)?)
            .ok()?;
        if &trailer[4..] != END_MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(trailer[..4].try_into().ok()?) as u64;
        let start = end.checked_sub(len)?;
        if start < HEADER_LEN as u64 || len as usize > MAX_RECORD {
            return None;
        }
        let mut bytes = vec![0u8; len as usize];
        self.file.read_exact_at(&mut bytes, start).ok()?;
        decode(&bytes).ok()
    }

    /// After a crash during an append: find the last complete record by
    /// looking back from the end (the torn append is at most one record
    /// long), and cut what follows only if it can be nothing but that torn
    /// append ([`is_torn_append`]). The cut bytes are first saved, flushed,
    /// next to the log (`ledger.log.torn-<offset>-<time>`): csc never
    /// deletes bytes that might be evidence, even on a wrong guess.
    fn cut_torn_tail(&self, dir: &std::fs::File, size: u64) -> Result<Tail, String> {
        let damaged = |at: u64| {
            format!(
                "{LOG_FILE} is damaged at byte {at}: what follows is no complete entry and not an interrupted append; run csc ledger verify (csc never cuts what may be evidence)"
            )
        };
        let header = HEADER_LEN as u64;
        let from = size.saturating_sub(MAX_RECORD as u64 + 8).max(header);
        let window = self.read_range(from, size)?;
        let mut tail = None;
        for end in (4..=window.len()).rev() {
            if window[end - 4..end] == *END_MAGIC {
                let at = from + end as u64;
                if let Some(entry) = self.record_ending_at(at) {
                    tail = Some(Tail {
                        end: at,
                        next_index: entry.index.saturating_add(1),
                        last_leaf: entry.leaf_hash,
                    });
                    break;
                }
            }
        }
        let tail = match tail {
            Some(t) => t,
            None if from == header => Tail {
                end: header,
                next_index: 0,
                last_leaf: [0; 32],
            },
            None => return Err(damaged(from)),
        };
        let cut = &window[(tail.end - from) as usize..];
        if !is_torn_append(cut) {
            return Err(damaged(tail.end));
        }
        self.save_cut(dir, tail.end, cut)?;
        self.file
            .set_len(tail.end)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot cut the torn end of {LOG_FILE}: {e}"))?;
        Ok(tail)
    }

    /// Keep the bytes about to be cut at `offset` in a new file of their
    /// own, flushed, with its name synced, before the cut.
    fn save_cut(&self, dir: &std::fs::File, offset: u64, bytes: &[u8]) -> Result<(), String> {
        use nix::fcntl::{OFlag, openat};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{LOG_FILE}.torn-{offset}-{nanos}");
        let fd = openat(
            dir,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| format!("cannot save the torn end of {LOG_FILE} as {name}: {e}"))?;
        let file = std::fs::File::from(fd);
        file.write_all_at(bytes, 0)
            .and_then(|()| file.sync_all())
            .and_then(|()| dir.sync_all())
            .map_err(|e| format!("cannot save the torn end of {LOG_FILE} as {name}: {e}"))
    }

    /// The bytes from `start` to `end`.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<u8>, String> {
        let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
        self.file
            .read_exact_at(&mut bytes, start)
            .map_err(|e| format!("cannot read {LOG_FILE}: {e}"))?;
        Ok(bytes)
    }

    /// The bytes from `start` to `end` (`None` when longer than a record).
    fn region(&self, start: u64, end: u64) -> Result<Option<Vec<u8>>, String> {
        if end.saturating_sub(start) as usize > MAX_RECORD {
            return Ok(None);
        }
        self.read_range(start, end).map(Some)
    }

    /// Call `each` with every entry in file order; an incomplete or
    /// damaged record is an error naming its byte offset.
    pub fn for_each(
        &self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        let size = self.size()?;
        self.for_each_within(size, each)
    }

    /// [`LedgerLog::for_each`] over the first `size` bytes only (a size
    /// read under the store's lock: an append in progress is not seen
    /// half-written).
    pub fn for_each_within(
        &self,
        size: u64,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        self.for_each_from(size, &mut |e, _| each(e))
    }

    /// The file's size now.
    pub fn size(&self) -> Result<u64, String> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| format!("cannot stat {LOG_FILE}: {e}"))?
            .len())
    }

    fn for_each_from(
        &self,
        size: u64,
        each: &mut dyn FnMut(Entry, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let io = |e: std::io::Error| format!("cannot read {LOG_FILE}: {e}");
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &self.file);
        reader
            .seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(io)?;
        let mut offset = HEADER_LEN as u64;
        let mut bytes = Vec::new();
        while offset < size {
            let parsed = (|| -> Result<Entry, String> {
                let mut head = [0u8; 8];
                if size - offset < 8 {
                    return Err("no complete entry header".to_owned());
                }
                reader.read_exact(&mut head).map_err(io)?;
                let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
                if &head[..4] != RECORD_MAGIC || !(FIXED + TRAILER..=MAX_RECORD).contains(&len) {
                    return Err("not the start of an entry".to_owned());
                }
                if len as u64 > size - offset {
                    return Err("the entry runs past the end of the file".to_owned());
                }
                bytes.clear();
                bytes.extend_from_slice(&head);
                bytes.resize(len, 0);
                reader.read_exact(&mut bytes[8..]).map_err(io)?;
                decode(&bytes)
            })();
            let entry = match parsed {
                Ok(entry) => entry,
                Err(why) => return Err(self.describe_bad(offset, size, &why)),
            };
            offset += bytes.len() as u64;
            each(entry, offset)?;
        }
        Ok(())
    }

    /// Why the record at `offset` does not parse, told as a torn final
    /// append or as damage.
    fn describe_bad(&self, offset: u64, size: u64, why: &str) -> String {
        let torn = matches!(self.region(offset, size), Ok(Some(r)) if is_torn_append(&r));
        if torn {
            format!(
                "{LOG_FILE} ends at byte {offset} in an incomplete entry ({why}): an append interrupted by a crash, never reported written; the next append removes it"
            )
        } else {
            format!("{LOG_FILE} is damaged at byte {offset}: {why}")
        }
    }
}

/// Whether a complete record starts at the beginning of `bytes`.
fn parses_at(bytes: &[u8]) -> bool {
    bytes
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(|b| u32::from_le_bytes(b) as usize)
        .and_then(|len| bytes.get(..len))
        .is_some_and(|r| decode(r).is_ok())
}

/// Whether `region` (everything after the last complete record) can only
/// be an append a crash interrupted: one `pwrite` of one record at the end
/// of the file, of which a prefix, or some blocks, reached the disk (blocks
/// that did not read back as zeros). So one of: a prefix of the record
/// magic or zeros, shorter than 8 bytes; a record start that claims more
/// bytes than there are; zeros where the record should start; a
/// full-length record whose end marker reads as zeros, or whose body (after
/// the fixed fields, whose hashes and index may hold zeros) holds a 16-byte
/// run of zeros, which canonical JSON never has. And no complete record
/// after it (that would make it damage before an entry). A full-length
/// record that merely fails its checksum is damage, never cut.
fn is_torn_append(region: &[u8]) -> bool {
    if region.is_empty() {
        return false;
    }
    if region.len() < 8 {
        return RECORD_MAGIC.starts_with(region) || region.iter().all(|b| *b == 0);
    }
    let starts = region.starts_with(RECORD_MAGIC);
    let claimed = u32::from_le_bytes([region[4], region[5], region[6], region[7]]) as usize;
    // A complete entry after the start: damage before it, not a torn end.
    if (1..region.len()).any(|i| region[i..].starts_with(RECORD_MAGIC) && parses_at(&region[i..])) {
        return false;
    }
    if !starts {
        return region[0] == 0;
    }
    if region.len() != claimed {
        return region.len() < claimed;
    }
    let zero_run = region
        .get(FIXED..)
        .is_some_and(|body| body.windows(16).any(|w| w.iter().all(|b| *b == 0)));
    zero_run || region.last() == Some(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn entry(i: u64) -> Entry {
        Entry {
            index: i,
            leaf_hash: [i as u8; 32],
            prev_leaf_hash: [i.wrapping_sub(1) as u8; 32],
            receipt: format!("{{\"n\":{i}}}").into_bytes(),
            appended_at: "2026-12-01T00:00:00Z".to_owned(),
        }
    }

    fn log_in(dir: &std::path::Path) -> (std::fs::File, LedgerLog) {
        let d = std::fs::File::open(dir).unwrap();
        LedgerLog::create(&d, ID, &[]).unwrap();
        let log = LedgerLog::open(&d, ID).unwrap().unwrap();
        (d, log)
    }

    fn all(log: &LedgerLog) -> Vec<Entry> {
        let mut out = Vec::new();
        log.for_each(&mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn records_round_trip_and_reject_every_single_byte_change() {
        let e = entry(7);
        let bytes = encode(&e).unwrap();
        assert_eq!(decode(&bytes).unwrap(), e);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flipped byte {i} still decodes");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn appends_chain_indices_and_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (d, mut log) = log_in(dir.path());
        for i in 0..3u8 {
            assert_eq!(log.append(&d, &[i; 32], b"{}", "t").unwrap(), u64::from(i));
        }
        let got = all(&log);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].prev_leaf_hash, [1; 32]);
        assert_eq!(got[0].prev_leaf_hash, [0; 32]);
    }

    #[test]
    fn a_torn_final_record_is_cut_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let (d, mut log) = log_in(dir.path());
        log.append(&d, &[1; 32], b"{\"a\":1}", "t").unwrap();
        let good = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        // A crash mid-append: part of a record, or zeros past the old end.
        let partial = &encode(&entry(1)).unwrap()[..40];
        for torn in [partial.to_vec(), vec![0u8; 300]] {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(LOG_FILE))
                .unwrap();
            std::io::Write::write_all(&mut &f, &torn).unwrap();
            let err = log.for_each(&mut |_| Ok(())).unwrap_err();
            assert!(err.contains("incomplete entry"), "{err}");
            assert_eq!(log.append(&d, &[2; 32], b"{\"b\":2}", "t").unwrap(), 1);
            let got = all(&log);
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].prev_leaf_hash, [1; 32]);
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(LOG_FILE))
                .unwrap()
                .set_len(good)
                .unwrap();
        }
    }

    #[test]
    fn a_damaged_record_before_complete_ones_is_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (d, mut log) = log_in(dir.path());
        for i in 0..3u8 {
            log.append(&d, &[i; 32], b"{\"x\":1}", "t").unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = (bytes.len() - HEADER_LEN) / 3;
        // A flipped bit in the second record, and in the last one's
        // trailer (so the append must look back from the end).
        bytes[HEADER_LEN + len + FIXED + 3] ^= 0x01;
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = log.append(&d, &[9; 32], b"{}", "t").unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
        let err = log.for_each(&mut |_| Ok(())).unwrap_err();
        assert!(
            err.contains(&format!("damaged at byte {}", HEADER_LEN + len)),
            "{err}"
        );
        // Only the last record damaged (no zeros, full length): not cut.
        bytes[HEADER_LEN + len + FIXED + 3] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = log.append(&d, &[9; 32], b"{}", "t").unwrap_err();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn a_lone_first_entry_damaged_is_never_cut() {
        // Entry 0's previous hash is 32 zero bytes: no zero run in the
        // fixed fields may count as "torn".
        let dir = tempfile::tempdir().unwrap();
        let (d, mut log) = log_in(dir.path());
        log.append(&d, &[7; 32], b"{\"only\":1}", "t").unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = log.append(&d, &[8; 32], b"{}", "t").unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn every_shape_a_crash_leaves_is_cut_and_kept_aside() {
        let record = encode(&Entry {
            receipt: b"{\"path\":\"CSCE in a receipt\"}".to_vec(),
            ..entry(1)
        })
        .unwrap();
        let len = record.len();
        let mut last_lost = record.clone();
        last_lost[len - 5..].fill(0);
        let mut start_lost = record.clone();
        start_lost[..10].fill(0);
        let shapes: Vec<Vec<u8>> = vec![
            record[..3].to_vec(),        // a magic prefix
            record[..60].to_vec(),       // a prefix, text "CSCE" not yet written
            record[..len - 30].to_vec(), // all but the end, "CSCE" in the body
            last_lost,                   // the last bytes read back as zeros
            start_lost,                  // the first bytes read back as zeros
        ];
        for (k, torn) in shapes.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let (d, mut log) = log_in(dir.path());
            log.append(&d, &[1; 32], b"{\"a\":1}", "t").unwrap();
            let path = dir.path().join(LOG_FILE);
            let good = std::fs::metadata(&path).unwrap().len();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(&torn);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                log.append(&d, &[2; 32], b"{}", "t").unwrap(),
                1,
                "shape {k}"
            );
            let kept: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(&format!("{LOG_FILE}.torn-{good}-")))
                .collect();
            assert_eq!(kept.len(), 1, "shape {k}: {kept:?}");
            assert_eq!(
                std::fs::read(dir.path().join(&kept[0])).unwrap(),
                torn,
                "shape {k}"
            );
            assert_eq!(all(&log).len(), 2, "shape {k}");
        }
    }

    #[test]
    fn a_replaced_or_foreign_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (d, mut log) = log_in(dir.path());
        let other = "ffffffffffffffffffffffffffffffff";
        assert!(
            LedgerLog::open(&d, other)
                .unwrap_err()
                .to_string()
                .contains("belongs to store")
        );
        LedgerLog::create(&d, ID, &[]).unwrap();
        let err = log.append(&d, &[1; 32], b"{}", "t").unwrap_err();
        assert!(err.contains("replaced"), "{err}");
        std::fs::remove_file(dir.path().join(LOG_FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(LOG_FILE)).unwrap();
        assert!(
            LedgerLog::open(&d, ID)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
    }
}
