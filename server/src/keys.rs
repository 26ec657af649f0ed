//! Server secrets: taken from the configuration, or generated on first start
//! and kept in the data directory, readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::RngCore;

/// The secret in `configured`, or the one kept in `data_dir/file`, made on
/// first use.
pub fn load_or_create(data_dir: &Path, file: &str, configured: Option<&str>) -> Result<Vec<u8>> {
    if let Some(secret) = configured {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {mode:o}); run chmod 600 on it",
                    path.display()
                );
            }
            let secret = hex::decode(text.trim())
                .with_context(|| format!("{} does not hold a hex key", path.display()))?;
            if secret.len() < 32 {
                bail!("{} holds a key shorter than 32 bytes", path.display());
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            // create_new: two processes starting at once cannot both write.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(&secret).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new key");
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Hex of HMAC-SHA256(key, parts joined by NUL): keyed hashes of phone
/// numbers and one-time codes, useless to whoever copies the database
/// without the key.
pub fn keyed_hash(key: &[u8], parts: &[&str]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(&[0]);
        }
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Hex of SHA-256: enough for random secrets of 256 bits (refresh tokens,
/// robot secrets), which cannot be guessed back from their hash.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A new random secret: 32 bytes, hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_owner_only_permissions() {
        let dir = std::env::temp_dir().join(format!("sb-keys-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        let first = load_or_create(&dir, "jwt.key", None).unwrap();
        let second = load_or_create(&dir, "jwt.key", None).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        let mode = fs::metadata(dir.join("jwt.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        fs::set_permissions(dir.join("jwt.key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&dir, "jwt.key", None).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configured_secret_wins() {
        let dir = std::env::temp_dir();
        let s = load_or_create(&dir, "never-written.key", Some("x".repeat(32).as_str())).unwrap();
        assert_eq!(s, b"x".repeat(32));
        assert!(!dir.join("never-written.key").exists());
    }
}
