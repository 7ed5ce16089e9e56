//! CDP API keys and the ES256 JWTs Coinbase wants on every authenticated request.
//!
//! No JWT crate: the token is two base64url JSON objects and a raw r||s P-256 signature, which
//! is less code than configuring a general library to emit Coinbase's `nonce` header field.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Lifetime of every JWT; Coinbase rejects tokens valid for longer than two minutes.
pub const JWT_LIFETIME_SECS: u64 = 120;

/// A CDP API key: its name and its P-256 private key. `Debug` shows the name only.
pub struct Credentials {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("name", &self.name).field("key", &"<redacted>").finish()
    }
}

/// Why credentials could not be loaded. Every message names where they were read from and
/// never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{origin}: cannot read: {error}")]
    Unreadable { origin: String, error: std::io::Error },
    #[error("{origin}: not set")]
    Missing { origin: String },
    #[error("{origin}: not JSON (line {line}, column {column}); expected {{\"name\", \"privateKey\"}}")]
    NotJson { origin: String, line: usize, column: usize },
    #[error("{origin}: no \"{field}\" string field")]
    MissingField { origin: String, field: &'static str },
    #[error("{origin}: privateKey is not a P-256 EC private key in SEC1 or PKCS#8 PEM")]
    BadKey { origin: String },
}

impl Credentials {
    /// Reads a CDP key file as Coinbase lets you download it: `{"name", "privateKey"}`.
    pub fn from_key_file(path: &Path) -> Result<Self, CredentialError> {
        let origin = format!("key file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => CredentialError::Missing { origin: origin.clone() },
            _ => CredentialError::Unreadable { origin: origin.clone(), error },
        })?;
        Self::from_json(&origin, &text)
    }

    /// Reads the same JSON as [`Credentials::from_key_file`] from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, CredentialError> {
        let origin = format!("environment variable {var}");
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => Self::from_json(&origin, &text),
            // A non-UTF-8 value is reported as unset rather than echoed.
            _ => Err(CredentialError::Missing { origin }),
        }
    }

    /// Builds credentials from a key name and a SEC1 (`BEGIN EC PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_parts(name: &str, pem: &str) -> Result<Self, CredentialError> {
        Self::from_parts_at("key parts", name, pem)
    }

    fn from_parts_at(origin: &str, name: &str, pem: &str) -> Result<Self, CredentialError> {
        if name.trim().is_empty() {
            return Err(CredentialError::MissingField { origin: origin.into(), field: "name" });
        }
        // Keys pasted through shells and .env files often arrive with literal "\n".
        let pem = pem.replace("\\n", "\n");
        let pem = pem.trim();
        let key = p256::SecretKey::from_sec1_pem(pem)
            .map(SigningKey::from)
            .or_else(|_| SigningKey::from_pkcs8_pem(pem))
            .map_err(|_| CredentialError::BadKey { origin: origin.into() })?;
        Ok(Credentials { name: name.to_string(), key })
    }

    fn from_json(origin: &str, text: &str) -> Result<Self, CredentialError> {
        // Parse to a Value first: typed deserialisation errors quote values, and the value
        // could be the key.
        let v: Value = serde_json::from_str(text).map_err(|e| CredentialError::NotJson {
            origin: origin.into(),
            line: e.line(),
            column: e.column(),
        })?;
        let field = |field: &'static str| {
            v.get(field)
                .and_then(Value::as_str)
                .ok_or(CredentialError::MissingField { origin: origin.into(), field })
        };
        let name = field("name")?;
        let pem = field("privateKey")?;
        Self::from_parts_at(origin, name, pem)
    }

    pub fn key_name(&self) -> &str {
        &self.name
    }

    /// The public half, for tests and for checking a key against what CDP shows.
    pub fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }

    /// A fresh JWT for one REST request. `host` is `host[:port]` of the REST endpoint and
    /// `path` excludes the query string, e.g. `("GET", "api.coinbase.com",
    /// "/api/v3/brokerage/accounts")`.
    pub fn rest_jwt(&self, method: &str, host: &str, path: &str) -> String {
        self.sign_at(unix_now(), Some(&format!("{method} {host}{path}")))
    }

    /// A fresh JWT for a WebSocket subscribe message (the REST claims without `uri`).
    pub fn ws_jwt(&self) -> String {
        self.sign_at(unix_now(), None)
    }

    pub(crate) fn sign_at(&self, now: u64, uri: Option<&str>) -> String {
        let header = json!({
            "alg": "ES256",
            "typ": "JWT",
            "kid": self.name,
            "nonce": nonce(),
        });
        let mut claims = json!({
            "iss": "cdp",
            "sub": self.name,
            "nbf": now,
            "exp": now + JWT_LIFETIME_SECS,
        });
        if let (Some(uri), Some(map)) = (uri, claims.as_object_mut()) {
            map.insert("uri".into(), Value::String(uri.to_string()));
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // ES256 in JWS is the fixed-width r||s form, not DER.
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// 16 random bytes as 32 hex chars. Coinbase uses the nonce against replay; should the OS RNG
/// fail, a hash of time, pid and a counter is still unique per token.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut h = Sha256::new();
        h.update(nanos.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        bytes.copy_from_slice(&h.finalize()[..16]);
    }
    hex(&bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    fn test_key() -> Credentials {
        // Derived from a fixed scalar so the test needs no RNG and no key file.
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).expect("valid scalar");
        let pem = secret.to_sec1_pem(LineEnding::LF).expect("pem");
        Credentials::from_parts("organizations/o/apiKeys/k", &pem).expect("sec1 key")
    }

    fn b64json(part: &str) -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn rest_jwt_verifies_and_carries_the_contract_fields() {
        let creds = test_key();
        let jwt = creds.rest_jwt("POST", "127.0.0.1:41234", "/api/v3/brokerage/orders");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);

        let header = b64json(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], "organizations/o/apiKeys/k");
        let nonce = header["nonce"].as_str().unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(nonce.chars().all(|c| c.is_ascii_hexdigit()));

        let claims = b64json(parts[1]);
        assert_eq!(claims["iss"], "cdp");
        assert_eq!(claims["sub"], "organizations/o/apiKeys/k");
        assert_eq!(claims["uri"], "POST 127.0.0.1:41234/api/v3/brokerage/orders");
        let nbf = claims["nbf"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap() - nbf, 120);
        assert!(nbf.abs_diff(unix_now()) < 5);

        let sig_bytes = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig_bytes.len(), 64, "raw r||s, not DER");
        let sig = Signature::from_slice(&sig_bytes).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        creds.verifying_key().verify(signed.as_bytes(), &sig).expect("signature verifies");
    }

    #[test]
    fn ws_jwt_has_no_uri_and_nonces_differ() {
        let creds = test_key();
        let a = creds.ws_jwt();
        let b = creds.ws_jwt();
        let claims = b64json(a.split('.').nth(1).unwrap());
        assert!(claims.get("uri").is_none());
        let na = b64json(a.split('.').next().unwrap())["nonce"].clone();
        let nb = b64json(b.split('.').next().unwrap())["nonce"].clone();
        assert_ne!(na, nb);
    }

    #[test]
    fn pkcs8_and_escaped_newlines_are_accepted() {
        let secret = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        let a = Credentials::from_parts("k", &pkcs8).expect("pkcs8");
        let escaped = secret.to_sec1_pem(LineEnding::LF).unwrap().replace('\n', "\\n");
        let b = Credentials::from_parts("k", &escaped).expect("escaped sec1");
        assert_eq!(a.verifying_key(), b.verifying_key());
    }

    #[test]
    fn errors_name_the_source_and_never_print_the_key() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pem = secret.to_sec1_pem(LineEnding::LF).unwrap().to_string();
        let body_line = pem.lines().nth(1).unwrap().to_string();

        let dir = std::env::temp_dir().join(format!("strata-cb-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: Vec<(&str, String, &str)> = vec![
            ("missing.json", String::new(), "not set"),
            ("notjson.json", format!("name=x\n{pem}"), "not JSON"),
            ("noname.json", json!({"privateKey": pem}).to_string(), "\"name\""),
            ("nokey.json", json!({"name": "k"}).to_string(), "\"privateKey\""),
            (
                // Damaged key: the base64 body is cut in half.
                "badkey.json",
                json!({"name": "k", "privateKey": pem.replace(&body_line, &body_line[..20])}).to_string(),
                "not a P-256",
            ),
        ];
        for (file, content, expect) in cases {
            let path = dir.join(file);
            if !content.is_empty() {
                std::fs::write(&path, &content).unwrap();
            }
            let err = Credentials::from_key_file(&path).unwrap_err().to_string();
            assert!(err.contains(file), "{err} names the file");
            assert!(err.contains(expect), "{err} says {expect}");
            assert!(!err.contains(&body_line[..16]), "{err} leaks key material");
        }
        std::fs::remove_dir_all(&dir).ok();

        let var = "STRATA_CB_TEST_UNSET_VARIABLE";
        let err = Credentials::from_env(var).unwrap_err().to_string();
        assert!(err.contains(var) && err.contains("not set"), "{err}");

        let creds = test_key();
        let debug = format!("{creds:?}");
        assert!(debug.contains("organizations/o/apiKeys/k"));
        assert!(!debug.contains(&body_line[..16]));
    }

    #[test]
    fn keys_on_other_curves_are_refused() {
        // Throwaway test keys from `openssl ecparam -name secp384r1 -genkey -noout` and
        // `openssl genpkey -algorithm ed25519`: well-formed PEM, wrong algorithm.
        let p384 = "-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDBPLVVILojm/dcLnaV34b/NhTsXPvcDKvacP4hhSayl6Gpp/kgQ/QUw
7xQKB1GJTzqgBwYFK4EEACKhZANiAASq+pG3BZ3DEZKzg1vRUiaD2WRcd5C/B5mJ
WRxjIboWkVFBpAXHR4A7+Wh4P8WnlEoJDsBCKTyhTNyhx2os9qUyKtYSzyVyfLq6
4JqjmZdCkBmJMjugaqJQ08Bn6BrvuAw=
-----END EC PRIVATE KEY-----
";
        let ed25519 = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHb76Bsiox2KOlE6XH+1G9Iqob30qDDrlQk+47+i5XGZ
-----END PRIVATE KEY-----
";
        for pem in [p384, ed25519] {
            let err = Credentials::from_parts("k", pem).unwrap_err().to_string();
            assert!(err.contains("key parts") && err.contains("not a P-256"), "{err}");
        }
    }
}
