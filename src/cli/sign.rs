//! `atprov sign aliyun`: Aliyun IoT Platform sign-in computed on the host (what people used to
//! get from an online HMAC page): the MQTT client id, username and password of a device, or
//! the request of a one-type-one-secret dynamic registration; and `atprov sign aws-authorizer`:
//! the username of an AWS IoT custom-authorizer connect.

use std::path::PathBuf;

use serde_json::json;

use crate::cloud::aliyun::{self, Device, Method};
use crate::exit::Failure;

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
    /// The token (or set ATPROV_AUTHORIZER_TOKEN).
    #[arg(long, env = "ATPROV_AUTHORIZER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The RSA private key whose public half the authorizer holds (PEM or DER, PKCS#1 or #8).
    #[arg(long, value_name = "FILE")]
    pub signing_key: PathBuf,
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
    #[arg(long)]
    pub product_key: String,
    #[arg(long)]
    pub device_name: String,
    /// The device secret (or set ATPROV_DEVICE_SECRET, or use --device-secret-file).
    #[arg(long, env = "ATPROV_DEVICE_SECRET", hide_env_values = true)]
    pub device_secret: Option<String>,
    #[arg(long, value_name = "FILE", conflicts_with = "device_secret")]
    pub device_secret_file: Option<PathBuf>,
    /// Client id (default: the device name).
    #[arg(long)]
    pub client_id: Option<String>,
    #[arg(long, value_enum, default_value_t = Method::Hmacmd5)]
    pub method: Method,
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
    /// The product secret, for --register (or set ATPROV_PRODUCT_SECRET).
    #[arg(long, env = "ATPROV_PRODUCT_SECRET", hide_env_values = true)]
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
    #[arg(long)]
    pub json: bool,
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
    aliyun::check_parameters(&device, client_id).map_err(Failure::usage)?;
    if let Some(mode) = a.register {
        let secret = a.product_secret.as_deref().ok_or_else(|| {
            Failure::usage("--register needs --product-secret (or ATPROV_PRODUCT_SECRET)")
        })?;
        let random = a
            .random
            .as_deref()
            .ok_or_else(|| Failure::usage("--register needs --random (any string, e.g. 123456)"))?;
        let content = aliyun::register_content(&device, random);
        if mode == Register::Https {
            let r = aliyun::register_https(&device, secret, random, a.method);
            let url = format!(
                "https://iot-auth.{}.aliyuncs.com/auth/register/device",
                a.region
            );
            if a.json {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                v["url"] = json!(url);
                v["signContent"] = json!(content);
                println!("{v:#}");
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
            a.method,
            mode == Register::Regnwl,
            a.instance_id.as_deref(),
        );
        return print_sign_in(&s, &content, a.json);
    }
    let secret = match (&a.device_secret, &a.device_secret_file) {
        (Some(s), _) => s.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| Failure::usage(format!("--device-secret-file {}: {e}", path.display())))?,
        (None, None) => {
            return Err(Failure::usage(
                "the device secret is missing: --device-secret, ATPROV_DEVICE_SECRET or --device-secret-file",
            ));
        }
    };
    let s = aliyun::mqtt_direct(
        &device,
        &secret,
        client_id,
        a.method,
        a.timestamp.as_deref(),
        a.securemode,
    );
    let content = aliyun::sign_content(&device, client_id, a.timestamp.as_deref());
    print_sign_in(&s, &content, a.json)
}

fn aws_authorizer(a: AwsAuthorizerArgs) -> Result<(), Failure> {
    use crate::cloud::aws;
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
    let signature = aws::sign_token(der, format, &a.token)
        .map_err(|e| Failure::usage(format!("--signing-key {shown}: {e}")))?;
    let username = aws::authorizer_username(
        &a.name,
        &a.authorizer,
        &signature,
        &a.token_key_name,
        &a.token,
    );
    if a.json {
        let v = json!({
            "username": username,
            "signature": signature,
            "usernameLength": username.len(),
            "alpn": "mqtt",
            "port": 443,
        });
        println!("{v:#}");
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
        println!("{v:#}");
    } else {
        println!("client id  {}", s.client_id);
        println!("username   {}", s.username);
        println!("password   {}", s.password);
    }
    Ok(())
}
