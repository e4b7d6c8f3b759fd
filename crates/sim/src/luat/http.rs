//! The emulated Air780EP's HTTP(S) client (`AT+HTTPINIT`, `AT+HTTPPARA`, `AT+HTTPDATA` with the
//! `DOWNLOAD` prompt, `AT+HTTPACTION` → `+HTTPACTION: <method>,<status>,<len>`, `AT+HTTPREAD`,
//! `AT+HTTPTERM`; reference §2.3) talking to an emulated Aliyun registration server
//! (`/auth/register/device`, §4.5): it checks the signature with the product secret and
//! returns a device secret, which the emulated MQTT broker then accepts.

use super::LuatConfig;
use crate::aliyun;
use crate::cellular::{OK, cme, error, ok};
use crate::runner::{Script, Step};
use crate::unquote;

#[derive(Debug, Default)]
pub struct Http {
    open: bool,
    url: String,
    body: Vec<u8>,
    awaiting: bool,
    reply: Option<Vec<u8>>,
}

impl Http {
    /// `/auth/devicename` (§4.4): the form signed with the device secret earns an iotId and
    /// iotToken the broker then accepts.
    fn auth(config: &mut LuatConfig, form: &[(String, String)]) -> (u16, Vec<u8>) {
        let refused = (200, b"{\"code\":401,\"message\":\"auth failed\"}".to_vec());
        let Some(device) = config.aliyun.clone() else {
            return refused;
        };
        if !aliyun::https_auth_ok(form, &device) {
            return refused;
        }
        let (pk, dn, secret) = device;
        let client = field(form, "clientId").to_string();
        let id = format!("{dn}{pk}00");
        let token = aliyun::hmac_hex(
            "hmacmd5",
            secret.as_bytes(),
            format!("token{dn}").as_bytes(),
        )
        .expect("a known method");
        config.tokens = Some((client, id.clone(), token.clone()));
        let reply = serde_json::json!({
            "code": 200,
            "data": {"iotId": id, "iotToken": token, "resources": {}},
            "message": "success",
        })
        .to_string();
        (200, reply.into_bytes())
    }

    pub fn awaiting_body(&self) -> bool {
        self.awaiting
    }

    pub fn command(
        &mut self,
        name: &str,
        p: &[&str],
        attached: bool,
        config: &mut LuatConfig,
    ) -> Script {
        match name {
            "AT+HTTPINIT" => {
                if self.open {
                    return error();
                }
                *self = Http {
                    open: true,
                    ..Http::default()
                };
                ok()
            }
            "AT+HTTPTERM" => {
                if !std::mem::take(&mut self.open) {
                    return error();
                }
                ok()
            }
            "AT+HTTPPARA" if self.open && p.len() >= 2 => {
                if unquote(p[0]).eq_ignore_ascii_case("URL") {
                    self.url = unquote(p[1]);
                }
                ok()
            }
            "AT+HTTPDATA" if self.open && !p.is_empty() => match p[0].trim().parse() {
                Ok(len) if len <= 3356 => {
                    self.awaiting = true;
                    vec![Step::Prompt {
                        bytes: b"\r\nDOWNLOAD\r\n".to_vec(),
                        len,
                    }]
                }
                _ => cme(53),
            },
            "AT+HTTPACTION" if self.open => {
                if !attached {
                    return cme(901);
                }
                if config.register_silent {
                    // Accepted, and then nothing: the server never answers.
                    return ok();
                }
                let (status, reply) = self.serve(config);
                let len = reply.len();
                self.reply = Some(reply);
                vec![
                    Step::Final(OK.to_vec()),
                    Step::Delay(std::time::Duration::from_millis(20)),
                    Step::Send(format!("\r\n+HTTPACTION: 1,{status},{len}\r\n").into_bytes()),
                ]
            }
            "AT+HTTPREAD" if self.open => match &self.reply {
                Some(body) => {
                    let mut out = format!("\r\n+HTTPREAD: {}\r\n", body.len()).into_bytes();
                    out.extend_from_slice(body);
                    out.extend_from_slice(b"\r\n");
                    vec![Step::Send(out), Step::Final(OK.to_vec())]
                }
                None => error(),
            },
            _ => error(),
        }
    }

    pub fn body(&mut self, data: Vec<u8>) -> Script {
        self.awaiting = false;
        self.body = data;
        ok()
    }

    /// The platform's HTTPS side: `/auth/register/device` checks the form's signature with the
    /// product secret and issues the device secret; `/auth/devicename` checks it with the
    /// device secret and issues an iotId and iotToken the broker then accepts.
    fn serve(&self, config: &mut LuatConfig) -> (u16, Vec<u8>) {
        let form = aliyun::form(&self.body);
        if self.url.ends_with("/auth/devicename") {
            return Self::auth(config, &form);
        }
        if !self.url.ends_with("/auth/register/device") {
            return (404, b"{\"code\":404,\"message\":\"not found\"}".to_vec());
        }
        let (pk, dn) = (field(&form, "productKey"), field(&form, "deviceName"));
        let (pk, dn) = (pk.to_string(), dn.to_string());
        let Some((known_pk, product_secret)) = config.product.clone() else {
            return (
                200,
                b"{\"code\":6288,\"message\":\"product not found\"}".to_vec(),
            );
        };
        if pk != known_pk || !aliyun::https_registration_ok(&form, &product_secret) {
            return (
                200,
                b"{\"code\":6250,\"message\":\"sign check failed\"}".to_vec(),
            );
        }
        let secret = aliyun::issued_secret(&product_secret, &dn);
        config.aliyun = Some((pk.clone(), dn.clone(), secret.clone()));
        let reply = serde_json::json!({
            "code": 200,
            "data": {"deviceName": dn, "deviceSecret": secret, "productKey": pk},
            "message": "success",
        })
        .to_string();
        (200, reply.into_bytes())
    }
}

/// A form field, empty when absent.
fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}
