//! CDP API keys and ES256 JWTs, checked the way Coinbase documents them. Written against
//! `p256` directly rather than a JWT library: the checks are few, and each one is a behaviour
//! the host's client must get right, so each is spelled out here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::SecretKey;
use p256::ecdsa::signature::{Signer, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

/// Seconds of clock skew tolerated on `nbf`, as the venue does.
const NBF_SKEW_SECS: i64 = 5;
/// Longest validity window Coinbase accepts for a JWT.
const MAX_LIFETIME_SECS: i64 = 120;

/// A CDP API key: its resource name and its P-256 private key.
pub struct ApiKey {
    pub name: String,
    pub signing: SigningKey,
}

/// Random bytes from the OS; failure means the machine cannot do crypto at all.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source is unavailable");
    buf
}

/// A random RFC 4122 version-4 UUID string (order ids, key names).
pub fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl ApiKey {
    /// A fresh key with a CDP-shaped name.
    pub fn generate() -> Self {
        let secret = loop {
            // Almost every 32-byte string is a valid scalar; retry the rest.
            if let Ok(k) = SecretKey::from_slice(&random_bytes::<32>()) {
                break k;
            }
        };
        ApiKey {
            name: format!("organizations/{}/apiKeys/{}", uuid_v4(), uuid_v4()),
            signing: SigningKey::from(secret),
        }
    }

    /// The key file JSON as Coinbase's download gives it: SEC1 PEM *with* the named-curve
    /// parameters (`MHcCAQEE...`). p256 omits them when it encodes, and some parsers (Go's
    /// x509, for one) refuse a SEC1 key without them, so the DER is laid out here by hand.
    pub fn to_key_file(&self) -> Result<String, String> {
        use base64::engine::general_purpose::STANDARD;
        const PRIME256V1: [u8; 12] = [0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let secret = SecretKey::from(&self.signing);
        let public = self.signing.verifying_key().to_encoded_point(false);
        let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
        der.extend_from_slice(&secret.to_bytes());
        der.extend_from_slice(&PRIME256V1);
        der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
        der.extend_from_slice(public.as_bytes());
        let b64 = STANDARD.encode(&der);
        let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).map_err(|e| e.to_string())?);
            pem.push('\n');
        }
        pem.push_str("-----END EC PRIVATE KEY-----\n");
        let v = json!({"name": self.name, "privateKey": pem});
        serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
    }

    /// Parses a key file; accepts SEC1 (`BEGIN EC PRIVATE KEY`) and PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn from_key_file(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("key file is not JSON: {e}"))?;
        let name = v["name"].as_str().ok_or("key file has no \"name\"")?.to_string();
        let pem = v["privateKey"].as_str().ok_or("key file has no \"privateKey\"")?;
        // Keys pasted into env vars or configs often carry literal "\n"; accept them too.
        let pem = pem.replace("\\n", "\n");
        let secret = if pem.contains("BEGIN EC PRIVATE KEY") {
            SecretKey::from_sec1_pem(&pem).map_err(|e| format!("bad SEC1 private key: {e}"))?
        } else {
            SecretKey::from_pkcs8_pem(&pem).map_err(|e| format!("bad PKCS#8 private key: {e}"))?
        };
        Ok(ApiKey { name, signing: SigningKey::from(secret) })
    }

    /// Signs a JWT as a CDP client does: `uri` for REST, `None` for a WebSocket subscribe.
    /// Used by the tests and by anyone driving the simulator by hand.
    pub fn sign_jwt(&self, uri: Option<&str>, now: i64) -> String {
        let nonce: String = random_bytes::<16>().iter().map(|x| format!("{x:02x}")).collect();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.name, "nonce": nonce});
        let mut claims = json!({"iss": "cdp", "sub": self.name, "nbf": now, "exp": now + MAX_LIFETIME_SECS});
        if let Some(u) = uri {
            claims["uri"] = json!(u);
        }
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }

    pub fn verifier(&self) -> JwtVerifier {
        JwtVerifier { name: self.name.clone(), key: *self.signing.verifying_key() }
    }
}

/// Checks JWTs against one key, as the venue would.
#[derive(Clone)]
pub struct JwtVerifier {
    name: String,
    key: VerifyingKey,
}

impl JwtVerifier {
    /// `Ok` if the token is valid at wall-clock `now`. `expected_uri` is `Some` for REST
    /// (`"<METHOD> <host><path>"`) and `None` for WebSocket, whose tokens carry no `uri`.
    pub fn verify(&self, token: &str, now: i64, expected_uri: Option<&str>) -> Result<(), String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("JWT must have three dot-separated parts".into());
        };
        let header = decode_json(h, "header")?;
        let claims = decode_json(p, "payload")?;
        let sig_bytes = B64.decode(s).map_err(|_| "JWT signature is not base64url")?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| "JWT signature must be 64 bytes of r||s")?;

        if header["alg"] != "ES256" {
            return Err("JWT alg must be ES256".into());
        }
        if header["typ"] != "JWT" {
            return Err("JWT typ must be JWT".into());
        }
        if header["kid"].as_str() != Some(self.name.as_str()) {
            return Err("JWT kid is not this API key's name".into());
        }
        match header["nonce"].as_str() {
            Some(n) if !n.is_empty() => {}
            _ => return Err("JWT header has no nonce".into()),
        }
        // Signature before claims: a forged token should learn nothing about our clock.
        self.key
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| "JWT signature does not verify with this API key")?;
        if claims["iss"] != "cdp" {
            return Err("JWT iss must be \"cdp\"".into());
        }
        if claims["sub"].as_str() != Some(self.name.as_str()) {
            return Err("JWT sub is not this API key's name".into());
        }
        let nbf = claims["nbf"].as_i64().ok_or("JWT nbf missing or not an integer")?;
        let exp = claims["exp"].as_i64().ok_or("JWT exp missing or not an integer")?;
        if nbf > now + NBF_SKEW_SECS {
            return Err(format!("JWT not valid yet (nbf {nbf}, now {now})"));
        }
        if exp <= now {
            return Err(format!("JWT expired (exp {exp}, now {now})"));
        }
        if exp - nbf > MAX_LIFETIME_SECS {
            return Err(format!("JWT lifetime exceeds {MAX_LIFETIME_SECS} s"));
        }
        if let Some(want) = expected_uri {
            match claims["uri"].as_str() {
                Some(got) if got == want => {}
                Some(got) => return Err(format!("JWT uri {got:?} does not match request {want:?}")),
                None => return Err("JWT has no uri claim".into()),
            }
        }
        Ok(())
    }
}

fn decode_json(part: &str, what: &str) -> Result<Value, String> {
    let bytes = B64.decode(part).map_err(|_| format!("JWT {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| format!("JWT {what} is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "GET 127.0.0.1:9/api/v3/brokerage/accounts";

    #[test]
    fn accepts_good_and_refuses_bad_tokens() {
        let key = ApiKey::generate();
        let v = key.verifier();
        let now = 1_700_000_000;
        assert_eq!(v.verify(&key.sign_jwt(Some(URI), now), now, Some(URI)), Ok(()));
        // WebSocket tokens carry no uri and are checked without one.
        assert_eq!(v.verify(&key.sign_jwt(None, now), now, None), Ok(()));

        let other = ApiKey::generate();
        let mut impostor = ApiKey::from_key_file(&other.to_key_file().unwrap()).unwrap();
        impostor.name = key.name.clone(); // right name, wrong key
        assert!(
            v.verify(&impostor.sign_jwt(Some(URI), now), now, Some(URI)).unwrap_err().contains("signature")
        );

        // exp = now + 120, so 120 s later it has expired.
        let expired = v.verify(&key.sign_jwt(Some(URI), now), now + 120, Some(URI));
        assert!(expired.unwrap_err().contains("expired"));
        // More than the 5 s skew in the future.
        assert!(
            v.verify(&key.sign_jwt(Some(URI), now + 6), now, Some(URI))
                .unwrap_err()
                .contains("not valid yet")
        );

        let wrong_uri =
            v.verify(&key.sign_jwt(Some("POST 127.0.0.1:9/api/v3/brokerage/accounts"), now), now, Some(URI));
        assert!(wrong_uri.unwrap_err().contains("uri"));
        assert!(v.verify(&key.sign_jwt(None, now), now, Some(URI)).is_err());
        assert!(v.verify("a.b", now, None).is_err());
        assert!(v.verify("!!.??.**", now, None).is_err());
    }

    #[test]
    fn key_file_round_trips_sec1_and_pkcs8() {
        let key = ApiKey::generate();
        let file = key.to_key_file().unwrap();
        assert!(file.contains("BEGIN EC PRIVATE KEY-----\\nMHcCAQEE"), "{file}");
        let back = ApiKey::from_key_file(&file).unwrap();
        assert_eq!(back.name, key.name);
        assert_eq!(back.signing.verifying_key(), key.signing.verifying_key());

        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let pkcs8 = SecretKey::from(&key.signing).to_pkcs8_pem(LineEnding::LF).unwrap();
        let file = json!({"name": "n", "privateKey": pkcs8.as_str()}).to_string();
        assert!(ApiKey::from_key_file(&file).is_ok());
    }
}
