//! The bundled modules whose resources this crate provides: `aws/network` (the target
//! assemblies `target` and `target_iam`) and `aws/ec2` (the `node` component). The
//! embedding program publishes them into its catalog (see [`BUNDLED_MODULES`]).

/// `modules/aws/network/dtk.module.yaml`: credentials, VPC, subnet, security group and
/// image map components, and the target assemblies `target` and `target_iam`.
pub const AWS_NETWORK_MODULE: &str = include_str!("../../modules/aws/network/dtk.module.yaml");

/// `modules/aws/ec2/dtk.module.yaml`: the `node` component that realizes nodes as EC2
/// instances.
pub const AWS_EC2_MODULE: &str = include_str!("../../modules/aws/ec2/dtk.module.yaml");

/// The bundled modules: each one's `namespace/name` and the text of its
/// `dtk.module.yaml` (a module directory holding just that file).
pub const BUNDLED_MODULES: &[(&str, &str)] = &[
    ("aws/network", AWS_NETWORK_MODULE),
    ("aws/ec2", AWS_EC2_MODULE),
];
