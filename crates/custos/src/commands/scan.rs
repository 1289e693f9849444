//! `custos scan`: tool descriptors or results checked against the detection rules, without a
//! gateway. (Being built.)

use clap::Args;

use crate::Failure;

#[derive(Debug, Args)]
pub struct ScanArgs {}

pub fn run(_args: ScanArgs) -> Result<(), Failure> {
    Err(Failure::usage("custos scan is not built yet"))
}
