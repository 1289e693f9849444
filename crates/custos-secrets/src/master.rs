//! The master key: 32 random bytes in a file outside the database, from which the sealing key
//! and the fingerprint key are derived.
//!
//! The database holds only sealed values, so a copy of the database without the key file
//! reveals no secret. The file is one line, `custos-master-key-v1:<base64url, no padding>`,
//! and must be private to its owner (mode 0600), as ssh demands of a private key.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use ring::{aead, hkdf, hmac};
use zeroize::Zeroizing;

use crate::error::SecretsError;

/// What the one line of a key file starts with; the version names the format and the
/// derivation below, so a future format can be told apart.
const KEY_FILE_PREFIX: &str = "custos-master-key-v1:";

/// Bytes of key material in the file.
const KEY_LEN: usize = 32;

/// A key file is one short line; anything much longer is not one, and is not read whole.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// HKDF salt: fixed, since the input is already uniformly random; it separates our
/// derivations from any other use of the same bytes.
const HKDF_SALT: &[u8] = b"custos-master-key-v1";

/// HKDF info labels, one per subkey, so no two uses ever share a key.
const AEAD_INFO: &[u8] = b"custos sealing key (chacha20-poly1305) v1";
const FINGERPRINT_INFO: &[u8] = b"custos fingerprint key (hmac-sha256) v1";
const CHECKPOINT_INFO: &[u8] = b"custos checkpoint signing seed (ed25519) v1";

/// The first byte of every sealed value: the format (cipher, nonce size) it was sealed with.
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The gateway's master key, as loaded from its key file. Holds only the derived subkeys,
/// zeroized on drop; its `Debug` prints no key material.
pub struct MasterKey {
    /// ChaCha20-Poly1305 key for [`MasterKey::seal`] and [`MasterKey::open`].
    aead_key: Zeroizing<[u8; KEY_LEN]>,
    fingerprinter: Fingerprinter,
    /// The Ed25519 seed audit checkpoints are signed with (`custos-evidence`).
    checkpoint_seed: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Loads the key at `path`, or creates it (and its missing parent directories, mode 0700)
    /// with fresh random bytes and mode 0600 when there is no file yet.
    ///
    /// Two processes racing to create the same file end up with the same key: the new file is
    /// written completely under a temporary name and then linked into place, which fails if
    /// another process got there first; the loser loads the winner's file. So a reader never
    /// sees a half-written key and no key is ever overwritten.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, SecretsError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Self::load(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SecretsError::KeyFileUnreadable { path: path.to_owned(), source }),
        }
        let create_err = |source| SecretsError::KeyFileCreate { path: path.to_owned(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(create_err)?;
        }

        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut_slice()).map_err(|_| SecretsError::Random)?;
        let mut line = Zeroizing::new(String::with_capacity(KEY_FILE_PREFIX.len() + 44));
        line.push_str(KEY_FILE_PREFIX);
        BASE64_URL_SAFE_NO_PAD.encode_string(key.as_slice(), &mut line);
        line.push('\n');

        let temp = temp_path(path)?;
        let written = write_new(&temp, line.as_bytes()).and_then(|()| fs::hard_link(&temp, path));
        // The temporary name has done its job whether or not the link worked; a leftover would
        // be a second copy of a key.
        let _ = fs::remove_file(&temp);
        match written {
            Ok(()) => Self::from_key(&key),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(source) => Err(create_err(source)),
        }
    }

    /// Loads the key at `path`. Refuses a file that group or other users may read or write.
    pub fn load(path: &Path) -> Result<MasterKey, SecretsError> {
        let unreadable = |source| SecretsError::KeyFileUnreadable { path: path.to_owned(), source };
        let malformed =
            |reason: &str| SecretsError::KeyFileMalformed { path: path.to_owned(), reason: reason.to_owned() };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(SecretsError::KeyFileMissing { path: path.to_owned() })
            }
            Err(source) => return Err(unreadable(source)),
        };
        // The mode of the file we opened, not of whatever the path names a moment later.
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(malformed("not a regular file"));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            let access = if mode & 0o044 != 0 { "readable" } else { "writable" };
            return Err(SecretsError::KeyFilePermissions { path: path.to_owned(), access, mode });
        }

        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(malformed("the file is too large to be a key file"));
        }
        let expected = "expected one line `custos-master-key-v1:<base64url key>`";
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed(expected))?;
        // A trailing newline (or an editor's CRLF) is the line's end, not part of the key.
        let encoded =
            text.trim_end_matches(['\n', '\r']).strip_prefix(KEY_FILE_PREFIX).ok_or_else(|| malformed(expected))?;
        let key = Zeroizing::new(
            BASE64_URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed("the key is not valid base64url"))?,
        );
        let key: &[u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| SecretsError::KeyFileMalformed {
            path: path.to_owned(),
            reason: format!("the key is {} bytes; expected {KEY_LEN}", key.len()),
        })?;
        Self::from_key(key)
    }

    fn from_key(key: &[u8; KEY_LEN]) -> Result<MasterKey, SecretsError> {
        let aead_key = derive(key, AEAD_INFO)?;
        let fingerprint_key = derive(key, FINGERPRINT_INFO)?;
        let checkpoint_seed = derive(key, CHECKPOINT_INFO)?;
        Ok(MasterKey { aead_key, fingerprinter: Fingerprinter { key: Arc::new(fingerprint_key) }, checkpoint_seed })
    }

    /// Encrypts `plaintext` for storage. `context` is bound to the result as associated data
    /// (e.g. `secret:NAME`, `signing-key:KID`): [`MasterKey::open`] under any other context
    /// fails, so a sealed value copied to another name in the database is useless there.
    ///
    /// Format: version byte `1` || 12-byte random nonce || ChaCha20-Poly1305 ciphertext and tag.
    /// Random 96-bit nonces are safe for the number of values a gateway ever seals.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        let key = self.cipher()?;
        // Zeroizing while it still holds the plaintext, i.e. if sealing fails.
        let mut out = Zeroizing::new(Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN));
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let failed = || SecretsError::Seal { context: context.to_owned() };
        let body = out.get_mut(1 + NONCE_LEN..).ok_or_else(failed)?;
        let tag = key
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(context), body)
            .map_err(|_| failed())?;
        out.extend_from_slice(tag.as_ref());
        Ok(std::mem::take(&mut *out))
    }

    /// Decrypts a value sealed by [`MasterKey::seal`] under the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let truncated = || SecretsError::SealedTruncated { context: context.to_owned() };
        let (&version, rest) = sealed.split_first().ok_or_else(truncated)?;
        if version != SEALED_VERSION {
            return Err(SecretsError::SealedVersion { context: context.to_owned(), version });
        }
        let (nonce, ciphertext) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(truncated)?;
        if ciphertext.len() < TAG_LEN {
            return Err(truncated());
        }
        let key = self.cipher()?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain_len = key
            .open_in_place(aead::Nonce::assume_unique_for_key(*nonce), aead::Aad::from(context), &mut buf)
            .map_err(|_| SecretsError::Decrypt { context: context.to_owned() })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// The seed of the Ed25519 key that signs audit checkpoints: derived, so it needs no storage,
    /// and changes only with the master key.
    pub fn checkpoint_seed(&self) -> &[u8; KEY_LEN] {
        &self.checkpoint_seed
    }

    /// The keyed fingerprinter of this master key.
    pub fn fingerprinter(&self) -> Fingerprinter {
        self.fingerprinter.clone()
    }

    /// ring's key schedule is not zeroized on drop, so it lives only for one operation; the
    /// bytes it is made from stay in `aead_key`.
    fn cipher(&self) -> Result<aead::LessSafeKey, SecretsError> {
        let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, self.aead_key.as_slice())
            .map_err(|_| SecretsError::Internal { what: "make the sealing key" })?;
        Ok(aead::LessSafeKey::new(key))
    }
}

/// Computes keyed fingerprints: `hmac-sha256:` and the first 128 bits (32 hex digits) of
/// HMAC-SHA256 under a key derived from the master key.
///
/// A fingerprint lets the audit log say "the same value as secret X" or "the same leaked key
/// as yesterday" without holding the value, and without letting anyone who reads the log test
/// guesses against it (a plain hash of a short secret could be brute-forced). Fingerprints
/// from different master keys never match. Cloning is cheap.
#[derive(Clone)]
pub struct Fingerprinter {
    key: Arc<Zeroizing<[u8; KEY_LEN]>>,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter([redacted])")
    }
}

impl Fingerprinter {
    /// A fingerprinter using `key` as the HMAC key directly, e.g. for tests that need one
    /// without a key file.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Fingerprinter {
        Fingerprinter { key: Arc::new(Zeroizing::new(*key)) }
    }

    /// A fingerprinter under a random key of this process: fingerprints are consistent within
    /// the process and match nothing outside it (for a gateway that holds no master key).
    pub fn ephemeral() -> Fingerprinter {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if getrandom::fill(key.as_mut_slice()).is_err() {
            // No randomness: a key derived from the time and address still makes fingerprints
            // consistent within this process; they are only weaker against guessing.
            let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &key);
            let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
            key.copy_from_slice(digest.as_ref());
        }
        Fingerprinter { key: Arc::new(key) }
    }

    /// The fingerprint of `value`: `hmac-sha256:` followed by 32 lowercase hex digits.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key.as_slice());
        let tag = hmac::sign(&key, value);
        let short = tag.as_ref().get(..16).unwrap_or(tag.as_ref());
        format!("hmac-sha256:{}", hex::encode(short))
    }
}

/// One subkey: HKDF-SHA256 of the master key under `info`.
fn derive(master: &[u8; KEY_LEN], info: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(master);
    let info = [info];
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut_slice()))
        // Only a wrong output length can fail, and 32 bytes is SHA-256's own.
        .map_err(|_| SecretsError::Internal { what: "derive a subkey" })?;
    Ok(out)
}

/// A fresh name beside `path` for writing the new key before linking it into place.
fn temp_path(path: &Path) -> Result<PathBuf, SecretsError> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|_| SecretsError::Random)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", hex::encode(suffix)));
    Ok(path.with_file_name(name))
}

/// Writes `contents` to a file that must not exist yet, mode 0600, and syncs it to disk.
fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        (dir, path)
    }

    #[test]
    fn create_then_load_gives_the_same_key() {
        let (_dir, path) = fresh();
        let created = MasterKey::load_or_create(&path).unwrap();
        let loaded = MasterKey::load(&path).unwrap();
        let fp = |k: &MasterKey| k.fingerprinter().fingerprint(b"value");
        assert_eq!(fp(&created), fp(&loaded));
        let sealed = created.seal("secret:a", b"hello").unwrap();
        assert_eq!(loaded.open("secret:a", &sealed).unwrap().as_slice(), b"hello");

        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("custos-master-key-v1:") && text.ends_with('\n'), "{text}");
        assert_eq!(text.trim_end().len(), "custos-master-key-v1:".len() + 43);
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_second_create_does_not_overwrite() {
        let (_dir, path) = fresh();
        let first = MasterKey::load_or_create(&path).unwrap();
        let before = fs::read(&path).unwrap();
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(first.fingerprinter().fingerprint(b"x"), second.fingerprinter().fingerprint(b"x"));
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let (_dir, path) = fresh();
        let prints: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| MasterKey::load_or_create(&path).unwrap().fingerprinter().fingerprint(b"x")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(prints.windows(2).all(|w| w[0] == w[1]), "{prints:?}");
    }

    #[test]
    fn two_master_keys_differ() {
        let (_dir, path) = fresh();
        let (_dir2, other) = fresh();
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&other).unwrap();
        assert_ne!(a.fingerprinter().fingerprint(b"x"), b.fingerprinter().fingerprint(b"x"));
        let sealed = a.seal("secret:a", b"hello").unwrap();
        let err = b.open("secret:a", &sealed).unwrap_err();
        assert_eq!(err.to_string(), "cannot decrypt `secret:a`: wrong master key or the value was altered");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let (_dir, path) = fresh();
        MasterKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load(&path).unwrap_err().to_string();
        assert_eq!(err, format!("`{}` is readable by other users (mode 0644); run chmod 600 on it", path.display()));
        // load_or_create refuses it too rather than replacing it.
        assert!(MasterKey::load_or_create(&path).is_err());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
        let err = MasterKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("is writable by other users (mode 0620)"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let (_dir, path) = fresh();
        let err = MasterKey::load(&path).unwrap_err().to_string();
        assert_eq!(err, format!("master key file `{}` does not exist", path.display()));
    }

    fn write_key_file(path: &Path, contents: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_new(path, contents).unwrap();
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        let (_dir, path) = fresh();
        let line = format!("custos-master-key-v1:{}\n", BASE64_URL_SAFE_NO_PAD.encode([7u8; 31]));
        write_key_file(&path, line.as_bytes());
        let err = MasterKey::load(&path).unwrap_err().to_string();
        assert_eq!(err, format!("master key file `{}` is malformed: the key is 31 bytes; expected 32", path.display()));
    }

    #[test]
    fn malformed_files_are_refused() {
        for contents in [
            &b""[..],
            b"custos-master-key-v2:AAAA\n",
            b"custos-master-key-v1:not base64!\n",
            b"\xff\xfe",
            &[b'a'; 2000][..],
        ] {
            let (_dir, path) = fresh();
            write_key_file(&path, contents);
            let err = MasterKey::load(&path).unwrap_err().to_string();
            assert!(err.starts_with(&format!("master key file `{}` is malformed: ", path.display())), "{err}");
        }
    }

    #[test]
    fn a_crlf_line_end_is_accepted() {
        let (_dir, path) = fresh();
        let line = format!("custos-master-key-v1:{}\r\n", BASE64_URL_SAFE_NO_PAD.encode([7u8; 32]));
        write_key_file(&path, line.as_bytes());
        let a = MasterKey::load(&path).unwrap();
        assert_eq!(a.open("c", &a.seal("c", b"v").unwrap()).unwrap().as_slice(), b"v");
    }

    fn key() -> (tempfile::TempDir, MasterKey) {
        let (dir, path) = fresh();
        let key = MasterKey::load_or_create(&path).unwrap();
        (dir, key)
    }

    #[test]
    fn seal_open_round_trip() {
        let (_dir, key) = key();
        for plain in [&b""[..], b"x", b"a much longer secret value \x00\xff with bytes"] {
            let sealed = key.seal("secret:github", plain).unwrap();
            assert_eq!(sealed.len(), 1 + NONCE_LEN + plain.len() + TAG_LEN);
            assert_eq!(sealed[0], 1);
            assert_eq!(key.open("secret:github", &sealed).unwrap().as_slice(), plain);
        }
        // Fresh nonces: the same plaintext never seals the same way twice.
        assert_ne!(key.seal("c", b"same").unwrap(), key.seal("c", b"same").unwrap());
    }

    #[test]
    fn open_under_another_context_fails() {
        let (_dir, key) = key();
        let sealed = key.seal("secret:a", b"hello").unwrap();
        let err = key.open("secret:b", &sealed).unwrap_err().to_string();
        assert_eq!(err, "cannot decrypt `secret:b`: wrong master key or the value was altered");
    }

    #[test]
    fn flipping_any_byte_fails() {
        let (_dir, key) = key();
        let sealed = key.seal("secret:a", b"hello world").unwrap();
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert!(key.open("secret:a", &altered).is_err(), "byte {i}");
        }
    }

    #[test]
    fn bad_framing_is_named() {
        let (_dir, key) = key();
        let sealed = key.seal("c", b"hello").unwrap();
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(key.open("c", &v2).unwrap_err().to_string(), "cannot decrypt `c`: unknown sealed format version 2");
        for short in [&[][..], &sealed[..1], &sealed[..1 + NONCE_LEN + TAG_LEN - 1]] {
            assert_eq!(
                key.open("c", short).unwrap_err().to_string(),
                "cannot decrypt `c`: the sealed value is truncated"
            );
        }
    }

    #[test]
    fn debug_prints_no_key() {
        let (_dir, key) = key();
        assert_eq!(format!("{key:?}"), "MasterKey([redacted])");
        assert_eq!(format!("{:?}", key.fingerprinter()), "Fingerprinter([redacted])");
    }

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        let a = Fingerprinter::from_key(&[1; 32]);
        let b = Fingerprinter::from_key(&[2; 32]);
        let fp = a.fingerprint(b"value");
        assert!(fp.starts_with("hmac-sha256:") && fp.len() == "hmac-sha256:".len() + 32, "{fp}");
        assert_eq!(fp, a.clone().fingerprint(b"value"));
        assert_ne!(fp, a.fingerprint(b"other"));
        assert_ne!(fp, b.fingerprint(b"value"));
        let e = Fingerprinter::ephemeral();
        assert_eq!(e.fingerprint(b"v"), e.fingerprint(b"v"));
        assert_ne!(e.fingerprint(b"v"), Fingerprinter::ephemeral().fingerprint(b"v"));
    }
}
