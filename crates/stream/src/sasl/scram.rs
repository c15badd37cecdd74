//! RFC 5802 / RFC 7677: the server side of SCRAM-SHA-1(-PLUS) and SCRAM-SHA-256(-PLUS).
//!
//! ```text
//! C: gs2-header client-first-message-bare        (n,,n=user,r=cnonce)
//! S: r=cnonce+snonce,s=salt,i=iterations
//! C: c=base64(gs2-header+cbdata),r=cnonce+snonce,p=proof
//! S: v=server-signature
//! ```
//!
//! Parsing is strict about attribute order (RFC 5802 §7) and lenient only where the grammar
//! allows optional extensions, which are ignored; the reserved `m=` extension is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq as _;

use super::credentials::fake_credentials;
use super::{
    ChannelBindingData, ChannelBindingType, Failure, FailureCondition, MAX_MESSAGE_LEN, Mechanism,
    ScramCredentials, ScramHash, Step, StoredCredentials,
};

/// Random bytes in the server's part of the nonce (base64'd to 32 characters).
const SERVER_NONCE_BYTES: usize = 24;

/// The parsed client-first-message.
#[derive(Debug, Clone)]
pub(crate) struct ClientFirst {
    /// The gs2 header exactly as received, including its trailing comma.
    pub(crate) gs2_header: String,
    /// The `p=` channel binding type, if any.
    pub(crate) binding: Option<ChannelBindingType>,
    /// The decoded `a=` authorization identity.
    pub(crate) authzid: Option<String>,
    /// The decoded, SASLprep'd `n=` username.
    pub(crate) username: String,
    /// client-first-message-bare exactly as received (part of AuthMessage).
    pub(crate) bare: String,
    /// The client's nonce.
    pub(crate) nonce: String,
}

/// Checks that `msg` is UTF-8 and not oversized.
pub(crate) fn as_text(msg: &[u8]) -> Result<&str, Failure> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(Failure::malformed("message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| Failure::malformed("message is not UTF-8"))
}

/// Returns the value of `field` if it is the attribute `name=value`.
pub(crate) fn attr(field: &str, name: char) -> Option<&str> {
    let mut chars = field.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        // Both characters are ASCII here, so byte index 2 is a char boundary.
        field.get(2..)
    } else {
        None
    }
}

/// Whether `field` has the shape of an extension attribute (`ALPHA "=" 1*value-char`,
/// where a value-char is any UTF-8 character except NUL and `,`).
fn is_extension(field: &str) -> bool {
    let bytes = field.as_bytes();
    bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' && !bytes.contains(&0)
}

/// Whether `nonce` is a valid `c-nonce`/`s-nonce`: printable ASCII except `,`.
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
pub(crate) fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('=') {
        out.push_str(rest.get(..pos)?);
        let escape = rest.get(pos..pos + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = rest.get(pos + 3..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// Parses and checks a client-first-message against the chosen mechanism and the bindings
/// we support.
pub(crate) fn parse_client_first(
    msg: &[u8],
    mechanism: Mechanism,
    cb: &ChannelBindingData,
) -> Result<ClientFirst, Failure> {
    let text = as_text(msg)?;
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::malformed("missing gs2 header"));
    };
    // flag + ',' + authz + ',' are all ASCII-delimited prefixes of `text`.
    let gs2_header = text
        .get(..flag.len() + authz.len() + 2)
        .ok_or_else(|| Failure::malformed("bad gs2 header"))?
        .to_owned();

    let binding = match flag {
        "n" | "y" if mechanism.is_plus() => {
            return Err(Failure::malformed(
                "a -PLUS mechanism requires channel binding",
            ));
        }
        "n" => None,
        "y" => {
            if cb.is_available() {
                // RFC 5802 §6: the client believes we do not support channel binding but we
                // do, so someone has removed the -PLUS mechanisms from our feature list.
                return Err(Failure::new(
                    FailureCondition::NotAuthorized,
                    "channel binding downgrade detected",
                ));
            }
            None
        }
        _ => {
            let name = attr(flag, 'p').ok_or_else(|| Failure::malformed("bad gs2 flag"))?;
            if !mechanism.is_plus() {
                return Err(Failure::malformed(
                    "channel binding requested with a non-PLUS mechanism",
                ));
            }
            let ty = ChannelBindingType::from_name(name)
                .filter(|ty| cb.get(*ty).is_some())
                .ok_or_else(|| {
                    Failure::new(
                        FailureCondition::NotAuthorized,
                        "unsupported channel binding type",
                    )
                })?;
            Some(ty)
        }
    };

    let authzid = if authz.is_empty() {
        None
    } else {
        let value = attr(authz, 'a').ok_or_else(|| Failure::malformed("bad authzid"))?;
        let decoded =
            decode_saslname(value).ok_or_else(|| Failure::malformed("bad authzid escape"))?;
        if decoded.is_empty() {
            return Err(Failure::malformed("empty authzid"));
        }
        Some(decoded)
    };

    let mut fields = bare.split(',');
    let first = fields.next().unwrap_or_default();
    if attr(first, 'm').is_some() {
        return Err(Failure::malformed("mandatory extensions are not supported"));
    }
    let raw_user = attr(first, 'n').ok_or_else(|| Failure::malformed("expected n="))?;
    let user = decode_saslname(raw_user).ok_or_else(|| Failure::malformed("bad username"))?;
    let username = stringprep::saslprep(&user)
        .map_err(|_| Failure::malformed("username is not valid under SASLprep"))?
        .into_owned();
    if username.is_empty() {
        return Err(Failure::malformed("empty username"));
    }
    let nonce = fields
        .next()
        .and_then(|f| attr(f, 'r'))
        .filter(|n| is_valid_nonce(n))
        .ok_or_else(|| Failure::malformed("expected a valid r="))?;
    if !fields.all(is_extension) {
        return Err(Failure::malformed("bad extension"));
    }

    Ok(ClientFirst {
        gs2_header,
        binding,
        authzid,
        username,
        bare: bare.to_owned(),
        nonce: nonce.to_owned(),
    })
}

/// The parsed client-final-message.
struct ClientFinal<'a> {
    /// client-final-message-without-proof (part of AuthMessage).
    without_proof: &'a str,
    /// The `c=` value, still base64.
    channel_binding: &'a str,
    /// The `r=` value.
    nonce: &'a str,
    /// The decoded `p=` value.
    proof: Vec<u8>,
}

fn parse_client_final(msg: &[u8]) -> Result<ClientFinal<'_>, Failure> {
    let text = as_text(msg)?;
    let comma = text
        .rfind(',')
        .ok_or_else(|| Failure::malformed("expected p="))?;
    let without_proof = text.get(..comma).unwrap_or_default();
    let proof_b64 = text
        .get(comma + 1..)
        .and_then(|f| attr(f, 'p'))
        .ok_or_else(|| Failure::malformed("expected p= last"))?;
    let proof = STANDARD
        .decode(proof_b64)
        .map_err(|_| Failure::malformed("bad proof encoding"))?;
    let mut fields = without_proof.split(',');
    let channel_binding = fields
        .next()
        .and_then(|f| attr(f, 'c'))
        .ok_or_else(|| Failure::malformed("expected c="))?;
    let nonce = fields
        .next()
        .and_then(|f| attr(f, 'r'))
        .ok_or_else(|| Failure::malformed("expected r="))?;
    if !fields.all(is_extension) {
        return Err(Failure::malformed("bad extension"));
    }
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// Where a server-side SCRAM exchange is.
#[derive(Debug)]
enum State {
    /// Waiting for client-first-message.
    AwaitFirst,
    /// client-first parsed; waiting for the account lookup.
    AwaitCredentials(ClientFirst),
    /// server-first sent; waiting for client-final-message.
    AwaitFinal {
        first: ClientFirst,
        server_first: String,
        nonce: String,
        creds: ScramCredentials,
        known: bool,
    },
    /// Finished (either way).
    Done,
}

/// Server side of one SCRAM exchange.
#[derive(Debug)]
pub(crate) struct ScramServer {
    mechanism: Mechanism,
    hash: ScramHash,
    state: State,
    /// The channel binding the client chose in its first message (for the login record).
    binding: Option<ChannelBindingType>,
    /// Fixed server nonce for test vectors.
    #[cfg(test)]
    pub(crate) nonce_override: Option<String>,
}

impl ScramServer {
    pub(crate) fn new(mechanism: Mechanism, hash: ScramHash) -> Self {
        ScramServer {
            mechanism,
            hash,
            state: State::AwaitFirst,
            binding: None,
            #[cfg(test)]
            nonce_override: None,
        }
    }

    /// The channel binding the client asked for (`p=`), once its first message is parsed.
    pub(crate) fn binding(&self) -> Option<ChannelBindingType> {
        self.binding
    }

    /// Handles the next client message: client-first or client-final, depending on state.
    pub(crate) fn message(&mut self, msg: &[u8], cb: &ChannelBindingData) -> Step {
        match self.state {
            State::AwaitFirst => self.client_first(msg, cb),
            State::AwaitFinal { .. } => self.client_final(msg, cb),
            State::AwaitCredentials(_) | State::Done => {
                self.fail(Failure::malformed("unexpected message"))
            }
        }
    }

    /// Handles client-first-message.
    fn client_first(&mut self, msg: &[u8], cb: &ChannelBindingData) -> Step {
        match parse_client_first(msg, self.mechanism, cb) {
            Ok(first) => {
                self.binding = first.binding;
                let step = Step::NeedCredentials {
                    username: first.username.clone(),
                    authzid: first.authzid.clone(),
                };
                self.state = State::AwaitCredentials(first);
                step
            }
            Err(failure) => self.fail(failure),
        }
    }

    /// Takes the account's credentials (or `None`) and produces server-first-message.
    pub(crate) fn credentials(
        &mut self,
        creds: Option<&StoredCredentials>,
        fake_salt_secret: &[u8; 32],
    ) -> Step {
        let State::AwaitCredentials(first) = std::mem::replace(&mut self.state, State::Done) else {
            return self.fail(Failure::new(
                FailureCondition::TemporaryAuthFailure,
                "credentials provided out of order",
            ));
        };
        // The fake record is computed for known users too, so both paths do the same work.
        let fake = fake_credentials(fake_salt_secret, &first.username, self.hash);
        let (creds, known) = match creds.and_then(|c| c.get(self.hash)) {
            Some(real) => (real.clone(), true),
            None => (fake, false),
        };
        let server_nonce = match self.server_nonce() {
            Ok(n) => n,
            Err(failure) => return self.fail(failure),
        };
        let mut nonce = String::with_capacity(first.nonce.len() + server_nonce.len());
        nonce.push_str(&first.nonce);
        nonce.push_str(&server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&creds.salt),
            creds.iterations
        );
        let step = Step::Challenge(server_first.as_bytes().to_vec());
        self.state = State::AwaitFinal {
            first,
            server_first,
            nonce,
            creds,
            known,
        };
        step
    }

    fn server_nonce(&self) -> Result<String, Failure> {
        #[cfg(test)]
        if let Some(n) = &self.nonce_override {
            return Ok(n.clone());
        }
        let mut raw = [0u8; SERVER_NONCE_BYTES];
        getrandom::fill(&mut raw)
            .map_err(|_| Failure::new(FailureCondition::TemporaryAuthFailure, "no randomness"))?;
        Ok(STANDARD.encode(raw))
    }

    /// Handles client-final-message: verifies binding, nonce and proof.
    fn client_final(&mut self, msg: &[u8], cb: &ChannelBindingData) -> Step {
        let State::AwaitFinal {
            first,
            server_first,
            nonce,
            creds,
            known,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return self.fail(Failure::malformed("unexpected message"));
        };
        let fin = match parse_client_final(msg) {
            Ok(f) => f,
            Err(failure) => return self.fail(failure),
        };
        if fin.proof.len() != self.hash.output_len() {
            return self.fail(Failure::malformed("proof has the wrong length"));
        }

        // c= must be base64(gs2-header || cb-data) for the binding the client chose.
        let cb_data = first.binding.and_then(|ty| cb.get(ty)).unwrap_or_default();
        let mut expected = Vec::with_capacity(first.gs2_header.len() + cb_data.len());
        expected.extend_from_slice(first.gs2_header.as_bytes());
        expected.extend_from_slice(cb_data);
        let expected_c = STANDARD.encode(&expected);
        let cb_ok = expected_c.as_bytes().ct_eq(fin.channel_binding.as_bytes());
        let nonce_ok = nonce.as_bytes().ct_eq(fin.nonce.as_bytes());

        let h = self.hash;
        let auth_message: [&[u8]; 5] = [
            first.bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            fin.without_proof.as_bytes(),
        ];
        let client_signature = h.hmac(&creds.stored_key, &auth_message);
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(fin.proof.iter().zip(client_signature.iter()))
        {
            *k = p ^ s;
        }
        let client_key = client_key.get(..h.output_len()).unwrap_or_default();
        let proof_ok = h.hash(client_key).ct_eq(&creds.stored_key);
        let ok = proof_ok & cb_ok & nonce_ok & subtle::Choice::from(u8::from(known));
        if !bool::from(ok) {
            return self.fail(Failure::not_authorized());
        }

        let server_signature = h.hmac(&creds.server_key, &auth_message);
        let mut additional = b"v=".to_vec();
        additional.extend_from_slice(STANDARD.encode(&*server_signature).as_bytes());
        Step::Success {
            username: first.username,
            authzid: first.authzid,
            additional_data: Some(additional),
        }
    }

    fn fail(&mut self, failure: Failure) -> Step {
        self.state = State::Done;
        Step::Failure(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb_both() -> ChannelBindingData {
        ChannelBindingData {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        }
    }

    fn condition(r: Result<ClientFirst, Failure>) -> FailureCondition {
        match r {
            Ok(first) => panic!("unexpectedly parsed {first:?}"),
            Err(f) => f.condition,
        }
    }

    #[test]
    fn saslname_decoding() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("plain").as_deref(), Some("plain"));
        assert_eq!(decode_saslname("bad=2"), None);
        assert_eq!(decode_saslname("bad=41"), None);
        assert_eq!(decode_saslname("="), None);
        assert_eq!(decode_saslname("é=2C").as_deref(), Some("é,"));
    }

    #[test]
    fn client_first_with_authzid_and_extension() {
        let none = ChannelBindingData::none();
        // "=40" is not a valid saslname escape.
        assert!(
            parse_client_first(b"n,a=juliet=40c,n=u,r=abc", Mechanism::ScramSha1, &none).is_err()
        );
        let first = parse_client_first(
            b"n,a=juliet@capulet.lit=2Cx,n=jul=3Diet,r=abc,x=ext",
            Mechanism::ScramSha1,
            &none,
        );
        let first = first.expect("parse");
        assert_eq!(first.authzid.as_deref(), Some("juliet@capulet.lit,x"));
        assert_eq!(first.username, "jul=iet");
        assert_eq!(first.bare, "n=jul=3Diet,r=abc,x=ext");
        assert_eq!(first.nonce, "abc");
    }

    #[test]
    fn client_first_rejections() {
        use FailureCondition::*;
        let none = ChannelBindingData::none();
        let both = cb_both();
        let m1 = Mechanism::ScramSha1;
        let p1 = Mechanism::ScramSha1Plus;
        let cases: &[(&[u8], Mechanism, &ChannelBindingData, FailureCondition)] = &[
            (b"", m1, &none, MalformedRequest),
            (b"n,,", m1, &none, MalformedRequest),
            (b"x,,n=u,r=a", m1, &none, MalformedRequest),
            (b"n,,m=ext,n=u,r=a", m1, &none, MalformedRequest),
            (b"n,,r=a,n=u", m1, &none, MalformedRequest),
            (b"n,,n=u", m1, &none, MalformedRequest),
            (b"n,,n=u,r=", m1, &none, MalformedRequest),
            (b"n,,n=,r=a", m1, &none, MalformedRequest),
            (b"n,,n=u,r=a,1bad", m1, &none, MalformedRequest),
            (b"n,b=x,n=u,r=a", m1, &none, MalformedRequest),
            (b"n,a=,n=u,r=a", m1, &none, MalformedRequest),
            (b"n,,n=u=41,r=a", m1, &none, MalformedRequest),
            (b"n,,n=u\xff,r=a", m1, &none, MalformedRequest),
            (b"n,,n=u\x07,r=a", m1, &none, MalformedRequest),
            // Downgrade: 'y' while we offer -PLUS.
            (b"y,,n=u,r=a", m1, &both, NotAuthorized),
            // p= with a non-PLUS mechanism.
            (b"p=tls-exporter,,n=u,r=a", m1, &both, MalformedRequest),
            // n/y with a PLUS mechanism.
            (b"n,,n=u,r=a", p1, &both, MalformedRequest),
            (b"y,,n=u,r=a", p1, &both, MalformedRequest),
            // Unknown or unavailable binding types.
            (b"p=tls-unique,,n=u,r=a", p1, &both, NotAuthorized),
            (b"p=tls-exporter,,n=u,r=a", p1, &none, NotAuthorized),
        ];
        for (msg, mech, cb, want) in cases {
            let got = condition(parse_client_first(msg, *mech, cb));
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn y_flag_is_fine_without_server_binding() {
        let first = parse_client_first(
            b"y,,n=u,r=a",
            Mechanism::ScramSha256,
            &ChannelBindingData::none(),
        )
        .expect("parse");
        assert_eq!(first.binding, None);
        assert_eq!(first.gs2_header, "y,,");
    }

    #[test]
    fn plus_binding_types_parse() {
        let both = cb_both();
        let first = parse_client_first(
            b"p=tls-server-end-point,,n=u,r=a",
            Mechanism::ScramSha256Plus,
            &both,
        )
        .expect("parse");
        assert_eq!(first.binding, Some(ChannelBindingType::TlsServerEndPoint));
        assert_eq!(first.gs2_header, "p=tls-server-end-point,,");
    }

    #[test]
    fn client_final_parsing() {
        let fin = parse_client_final(b"c=biws,r=abc,x=1,p=AAAA").expect("parse");
        assert_eq!(fin.without_proof, "c=biws,r=abc,x=1");
        assert_eq!(fin.channel_binding, "biws");
        assert_eq!(fin.nonce, "abc");
        assert_eq!(fin.proof, vec![0, 0, 0]);
        for bad in [
            &b"c=biws,r=abc"[..],
            b"r=abc,c=biws,p=AAAA",
            b"c=biws,p=AAAA",
            b"c=biws,r=abc,p=!!!!",
            b"c=biws,r=abc,p=AAAA,x=1",
            b"p=AAAA",
            b"",
        ] {
            assert!(
                parse_client_final(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn oversized_messages_are_malformed() {
        let big = vec![b'a'; MAX_MESSAGE_LEN + 1];
        let got = condition(parse_client_first(
            &big,
            Mechanism::ScramSha1,
            &ChannelBindingData::none(),
        ));
        assert_eq!(got, FailureCondition::MalformedRequest);
    }
}
