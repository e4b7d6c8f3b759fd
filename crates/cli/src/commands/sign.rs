//! `atprov sign aliyun`: Aliyun IoT Platform sign-in computed on the host (what people used to
//! get from an online HMAC page): the MQTT client id, username and password of a device, or
//! the request of a one-type-one-secret dynamic registration; and `atprov sign aws-authorizer`:
//! the username of an AWS IoT custom-authorizer connect.

use std::path::PathBuf;

use serde_json::json;

use crate::cloud::aliyun::{self, Device, Method};
use crate::error::Failure;

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(subcommand)]
    pub cloud: SignCloud,
}

#[derive(Debug, clap::Subcommand)]
pub enum SignCloud {
    /// Aliyun IoT Platform: MQTT client id, username and password (one device, one secret), or
    /// a dynamic registration (--register, with the product secret).
    Aliyun(AliyunArgs),
    /// AWS IoT Core custom authorizer: the MQTT username carrying the token and its RSA-SHA256
    /// signature (connect on 443 with ALPN `mqtt`).
    AwsAuthorizer(AwsAuthorizerArgs),
}

#[derive(Debug, clap::Args)]
pub struct AwsAuthorizerArgs {
    /// What comes before `?` in the username (often the client id).
    #[arg(long)]
    pub name: String,
    /// The authorizer's name (CreateAuthorizer --authorizer-name).
    #[arg(long)]
    pub authorizer: String,
    /// The token key name (CreateAuthorizer --token-key-name).
    #[arg(long)]
    pub token_key_name: String,
    /// File holding the token (first line), or - for standard input; or set
    /// ATPROV_AUTHORIZER_TOKEN. (Never on the command line: every `ps` would show it.)
    #[arg(long, value_name = "FILE|-")]
    pub token_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user of the machine.
    #[arg(long, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The RSA private key whose public half the authorizer holds (PEM or DER, PKCS#1 or #8).
    #[arg(long, value_name = "FILE")]
    pub signing_key: PathBuf,
    /// One JSON object on stdout (`username` and its parts).
    #[arg(long)]
    pub json: bool,
}

/// How a device registers itself with the product secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Register {
    /// HTTPS `POST /auth/register/device` (pre-registered device name): prints sign and body.
    Https,
    /// MQTT `authType=register` (pre-registered device name, TLS only).
    Mqtt,
    /// MQTT `authType=regnwl` (no pre-registration, TLS only).
    Regnwl,
}

#[derive(Debug, clap::Args)]
pub struct AliyunArgs {
    /// The product's ProductKey, from the Aliyun IoT console.
    #[arg(long)]
    pub product_key: String,
    /// The device's DeviceName, from the Aliyun IoT console.
    #[arg(long)]
    pub device_name: String,
    /// File holding the device secret (first line), or - for standard input; or set
    /// ATPROV_DEVICE_SECRET. (Never on the command line: every `ps` would show it.)
    #[arg(long, value_name = "FILE|-")]
    pub device_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user of the machine.
    #[arg(long, hide = true, value_name = "SECRET")]
    pub device_secret: Option<String>,
    /// Client id (default: the device name).
    #[arg(long)]
    pub client_id: Option<String>,
    /// The signing method.
    #[arg(long, value_enum, default_value_t = MethodArg::Hmacmd5)]
    pub method: MethodArg,
    /// Signed into the password and shown in the client id (any string; not checked against
    /// the clock by the platform).
    #[arg(long)]
    pub timestamp: Option<String>,
    /// 2 for TLS, 3 for plain TCP.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub securemode: u8,
    /// Dynamic registration instead of a connect: https, mqtt or regnwl.
    #[arg(long, value_enum)]
    pub register: Option<Register>,
    /// File holding the product secret for --register (first line), or - for standard
    /// input; or set ATPROV_PRODUCT_SECRET.
    #[arg(long, value_name = "FILE|-")]
    pub product_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user of the machine.
    #[arg(long, hide = true, value_name = "SECRET")]
    pub product_secret: Option<String>,
    /// The random value of a registration.
    #[arg(long)]
    pub random: Option<String>,
    /// Instance id of an Enterprise instance (regnwl).
    #[arg(long)]
    pub instance_id: Option<String>,
    /// Region of the HTTPS registration endpoint.
    #[arg(long, default_value = "cn-shanghai")]
    pub region: String,
    /// One JSON object on stdout (`mqttClientId`, `mqttUsername`, `mqttPassword`, or the
    /// registration request).
    #[arg(long)]
    pub json: bool,
}

/// A secret from a file (its first line), standard input (`-`) or an environment variable;
/// one given on the command line itself is refused with the ways that work.
fn secret(
    flag: &str,
    on_command_line: Option<&String>,
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<Option<String>, Failure> {
    if on_command_line.is_some() {
        return Err(Failure::usage(format!(
            "--{flag} on the command line would show the secret to every `ps` on this machine: use --{flag}-file FILE, --{flag}-file - (standard input) or {env}"
        )));
    }
    let text = match file {
        Some(p) if p.as_os_str() == "-" => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::usage(format!("--{flag}-file -: {e}")))?;
            line
        }
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| Failure::usage(format!("--{flag}-file {}: {e}", p.display())))?,
        None => match std::env::var(env) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.is_empty() {
        return Err(Failure::usage(format!(
            "--{flag}-file: the secret is empty"
        )));
    }
    Ok(Some(first))
}

/// Aliyun's signing methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// HMAC-MD5 (the platform's default).
    Hmacmd5,
    /// HMAC-SHA1.
    Hmacsha1,
    /// HMAC-SHA256.
    Hmacsha256,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Hmacmd5 => Method::Hmacmd5,
            MethodArg::Hmacsha1 => Method::Hmacsha1,
            MethodArg::Hmacsha256 => Method::Hmacsha256,
        }
    }
}

pub fn run(args: SignArgs) -> Result<(), Failure> {
    match args.cloud {
        SignCloud::Aliyun(a) => aliyun(a),
        SignCloud::AwsAuthorizer(a) => aws_authorizer(a),
    }
}

fn aliyun(a: AliyunArgs) -> Result<(), Failure> {
    let device = Device {
        product_key: &a.product_key,
        device_name: &a.device_name,
    };
    let client_id = a.client_id.as_deref().unwrap_or(&a.device_name);
    aliyun::check_parameters(&device, client_id)?;
    if let Some(mode) = a.register {
        let product_secret = secret(
            "product-secret",
            a.product_secret.as_ref(),
            a.product_secret_file.as_deref(),
            "ATPROV_PRODUCT_SECRET",
        )?
        .ok_or_else(|| {
            Failure::usage(
                "--register needs the product secret: --product-secret-file FILE|- or ATPROV_PRODUCT_SECRET",
            )
        })?;
        let secret = product_secret.as_str();
        let random = a
            .random
            .as_deref()
            .ok_or_else(|| Failure::usage("--register needs --random (any string, e.g. 123456)"))?;
        let content = aliyun::register_content(&device, random);
        if mode == Register::Https {
            let r = aliyun::register_https(&device, secret, random, Method::from(a.method));
            let url = format!(
                "https://iot-auth.{}.aliyuncs.com/auth/register/device",
                a.region
            );
            if a.json {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                v["url"] = json!(url);
                v["signContent"] = json!(content);
                crate::render::json_pretty(&v);
            } else {
                println!("POST {url}");
                println!("Content-Type: application/x-www-form-urlencoded");
                println!("Content-Length: {}", r.body_length);
                println!();
                println!("{}", r.body);
            }
            return Ok(());
        }
        let s = aliyun::register_mqtt(
            &device,
            secret,
            random,
            Method::from(a.method),
            mode == Register::Regnwl,
            a.instance_id.as_deref(),
        );
        return print_sign_in(&s, &content, a.json);
    }
    let secret = secret(
        "device-secret",
        a.device_secret.as_ref(),
        a.device_secret_file.as_deref(),
        "ATPROV_DEVICE_SECRET",
    )?
    .ok_or_else(|| {
        Failure::usage(
            "the device secret is missing: --device-secret-file FILE, --device-secret-file - (standard input) or ATPROV_DEVICE_SECRET",
        )
    })?;
    let s = aliyun::mqtt_direct(
        &device,
        &secret,
        client_id,
        Method::from(a.method),
        a.timestamp.as_deref(),
        a.securemode,
    );
    let content = aliyun::sign_content(&device, client_id, a.timestamp.as_deref());
    print_sign_in(&s, &content, a.json)
}

fn aws_authorizer(a: AwsAuthorizerArgs) -> Result<(), Failure> {
    use crate::cloud::aws;
    let token = secret(
        "token",
        a.token.as_ref(),
        a.token_file.as_deref(),
        "ATPROV_AUTHORIZER_TOKEN",
    )?
    .ok_or_else(|| {
        Failure::usage(
            "the token is missing: --token-file FILE, --token-file - or ATPROV_AUTHORIZER_TOKEN",
        )
    })?;
    let shown = a.signing_key.display();
    let loaded = crate::pki::load::load(&a.signing_key)
        .map_err(|e| Failure::usage(format!("--signing-key {shown}: {e}")))?;
    if loaded.is_encrypted_key() {
        return Err(Failure::usage(format!(
            "--signing-key {shown}: the key is encrypted; decrypt it (openssl pkey -in {shown} -out plain.pem)"
        )));
    }
    let (der, format) = loaded
        .private_key()
        .ok_or_else(|| Failure::usage(format!("--signing-key {shown}: no private key in it")))?;
    let signature = aws::sign_token(der, format, &token)
        .map_err(|e| Failure::usage(format!("--signing-key {shown}: {e}")))?;
    let username = aws::authorizer_username(
        &a.name,
        &a.authorizer,
        &signature,
        &a.token_key_name,
        &token,
    );
    if a.json {
        let v = json!({
            "username": username,
            "signature": signature,
            "usernameLength": username.len(),
            "alpn": "mqtt",
            "port": 443,
        });
        crate::render::json_pretty(&v);
    } else {
        println!("{username}");
        if username.len() > 256 {
            eprintln!(
                "note: the username is {} bytes: over Luat's 256-byte field; ESP-AT sends it with AT+MQTTLONGUSERNAME",
                username.len()
            );
        }
    }
    Ok(())
}

fn print_sign_in(s: &aliyun::MqttSignIn, content: &str, json: bool) -> Result<(), Failure> {
    if json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["signContent"] = json!(content);
        crate::render::json_pretty(&v);
    } else {
        println!("client id  {}", s.client_id);
        println!("username   {}", s.username);
        println!("password   {}", s.password);
    }
    Ok(())
}
