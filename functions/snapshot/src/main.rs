#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ec_functions::logging::init();
    let sdk = ec_functions::load_sdk_config().await;
    let lambda = ec_snapshot::Lambda::new(&ec_functions::Env::from_process(), &sdk)?;
    ec_functions::serve(|event| lambda.handle(event)).await
}
