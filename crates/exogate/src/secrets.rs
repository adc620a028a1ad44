//! The gateway's own secrets: the control-plane API key, the key that encrypts phone tokens at
//! rest (AES-256-GCM), and the key that signs status-callback URLs (HMAC-SHA256).

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// Derived from `EXOGATE_SECRET_KEY` (any string; hashed), or a random key kept in a file.
#[derive(Clone)]
pub struct Secrets {
    cipher_key: [u8; 32],
    mac_key: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

impl Secrets {
    pub fn from_passphrase(secret: &str) -> Self {
        let cipher_key = Sha256::digest(format!("exogate:aes:{secret}").as_bytes()).into();
        let mac_key = Sha256::digest(format!("exogate:hmac:{secret}").as_bytes()).into();
        Self { cipher_key, mac_key }
    }

    /// Reads the secret from `path`, creating it (random, mode 0600) if missing.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::from_passphrase(&read_or_create(path, "secret key")?))
    }

    pub fn encrypt(&self, plaintext: &str) -> anyhow::Result<Vec<u8>> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.cipher_key));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(&nonce, plaintext.as_bytes()).map_err(|_| anyhow::anyhow!("encryption failed"))?);
        Ok(out)
    }

    pub fn decrypt(&self, blob: &[u8]) -> anyhow::Result<String> {
        if blob.len() < NONCE_LEN {
            bail!("encrypted value is truncated");
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.cipher_key));
        let (nonce, body) = blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| anyhow::anyhow!("cannot decrypt a stored token: was EXOGATE_SECRET_KEY changed?"))?;
        String::from_utf8(plain).context("stored token is not UTF-8")
    }

    /// A URL-safe token binding `purpose` and `id` (e.g. a status callback for one call).
    pub fn sign(&self, purpose: &str, id: &str) -> String {
        hex::encode(self.mac(purpose, id).finalize().into_bytes())
    }

    /// Constant-time check of a token made by [`Secrets::sign`].
    pub fn verify(&self, purpose: &str, id: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(purpose, id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// [`Secrets::sign`] cut to 128 bits, for tokens that must stay short (URLs with a length cap).
    pub fn sign_short(&self, purpose: &str, id: &str) -> String {
        hex::encode(&self.mac(purpose, id).finalize().into_bytes()[..16])
    }

    /// Constant-time check of a token made by [`Secrets::sign_short`].
    pub fn verify_short(&self, purpose: &str, id: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) if bytes.len() == 16 => self.mac(purpose, id).verify_truncated_left(&bytes).is_ok(),
            _ => false,
        }
    }

    fn mac(&self, purpose: &str, id: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; 32 bytes can't fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).unwrap_or_else(|_| unreachable!());
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac
    }
}

/// Compares API keys without leaking where they differ.
pub fn keys_match(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random secret kept in `path` (created 0600 if missing).
pub fn read_or_create(path: &Path, what: &str) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let t = text.trim();
        if !t.is_empty() {
            return Ok(t.to_string());
        }
    }
    let mut bytes = [0u8; 32];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut bytes);
    let value = hex::encode(bytes);
    write_private(path, &value).with_context(|| format!("cannot write the {what} file {}", path.display()))?;
    Ok(value)
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{value}")
}

/// Where generated secrets live: beside the SQLite file (the working directory with PostgreSQL).
pub fn data_dir(database_url: &str) -> PathBuf {
    if !database_url.starts_with("sqlite:") {
        return PathBuf::from(".");
    }
    let path = database_url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let s = Secrets::from_passphrase("p");
        let blob = s.encrypt("token-123").unwrap();
        assert!(!blob.windows(9).any(|w| w == b"token-123"));
        assert_eq!(s.decrypt(&blob).unwrap(), "token-123");
        let mut bad = blob.clone();
        bad[15] ^= 1;
        assert!(s.decrypt(&bad).is_err());
        assert!(Secrets::from_passphrase("q").decrypt(&blob).is_err());
    }

    #[test]
    fn tokens() {
        let s = Secrets::from_passphrase("p");
        let t = s.sign("status", "call-1");
        assert!(s.verify("status", "call-1", &t));
        assert!(!s.verify("status", "call-2", &t));
        assert!(!s.verify("status", "call-1", "zz"));
        assert!(keys_match("abc", "abc") && !keys_match("abc", "abd"));
    }

    #[test]
    fn data_dirs() {
        assert_eq!(data_dir("sqlite://exogate.db"), PathBuf::from("."));
        assert_eq!(data_dir("sqlite:///var/lib/x/calls.db?mode=rwc"), PathBuf::from("/var/lib/x"));
    }
}
