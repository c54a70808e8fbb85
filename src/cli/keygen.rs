//! `csc keygen --out KEY.pem [--public-out PUB.pem] [--raw-public-out PUB.raw] [--force]`.

use crate::exit;
use std::path::PathBuf;
use zeroize::Zeroizing;

use super::{CliResult, Error};
use crate::evidence::keygen::{
    PRIVATE_MODE, PUBLIC_MODE, check_writable, fingerprint, public_key_base64, suggested_key_id,
    write_key_file,
};
use crate::evidence::keys;

/// Arguments of `csc keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key (PKCS#8 v1 PEM, mode 0600).
    #[arg(long, value_name = "KEY.pem")]
    pub out: PathBuf,
    /// Also write the public key as SPKI PEM.
    #[arg(long, value_name = "PUB.pem")]
    pub public_out: Option<PathBuf>,
    /// Also write the public key as raw 32 bytes (what the reference verifier reads).
    #[arg(long, value_name = "PUB.raw")]
    pub raw_public_out: Option<PathBuf>,
    /// Replace existing files (atomically; the new private key is still 0600).
    #[arg(long)]
    pub force: bool,
}

/// Run `csc keygen`.
pub fn run(args: Args) -> CliResult {
    let mut targets = vec![&args.out];
    targets.extend(args.public_out.iter());
    targets.extend(args.raw_public_out.iter());
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].contains(t) {
            return Err(Error::Failed(format!(
                "{} is given for two outputs",
                t.display()
            )));
        }
        check_writable(t, args.force)?;
    }

    let key = keys::generate_signing_key()
        .map_err(|e| Error::Failed(format!("cannot read the OS random source: {e}")))?;
    let public = key.verifying_key();
    let pem = Zeroizing::new(keys::signing_key_to_pkcs8_v1_pem(&key));
    write_key_file(&args.out, pem.as_bytes(), PRIVATE_MODE, args.force)?;
    outln!(
        "private key: {} (PKCS#8 PEM, mode 0600)",
        args.out.display()
    );
    if let Some(path) = &args.public_out {
        let text = keys::verifying_key_to_spki_pem(&public);
        write_key_file(path, text.as_bytes(), PUBLIC_MODE, args.force)?;
        outln!("public key:  {} (SPKI PEM)", path.display());
    }
    if let Some(path) = &args.raw_public_out {
        write_key_file(path, public.as_bytes(), PUBLIC_MODE, args.force)?;
        outln!("public key:  {} (raw 32 bytes)", path.display());
    }
    let key_id = suggested_key_id(&public);
    outln!("fingerprint: {}", fingerprint(&public));
    outln!("suggested key id: {key_id}");
    outln!(
        "keyring entry: {{\"key_id\": \"{key_id}\", \"public_key\": \"{}\"}}",
        public_key_base64(&public)
    );
    Ok(exit::SUCCESS)
}
