//! The network scenarios of `aws/network`: ensure → outputs filled → ensure again changes
//! nothing → delete removes only what dtk made.

use std::time::Instant;

use dtk_target_aws::{
    AwsError, Deletion, Gateway, Ipv4Cidr, NetworkDeletion, NetworkSpec, Ownership, ResourceKind,
    SecurityGroupRule,
};

use crate::{Raw, World, chain, filter};

fn rules() -> Vec<SecurityGroupRule> {
    let mut r = vec![
        SecurityGroupRule::parse("tcp", "22", "0.0.0.0/0").unwrap(),
        SecurityGroupRule::parse("all", "all", "SAME").unwrap(),
    ];
    r.sort();
    r
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

/// Scenario (c): nothing given, so VPC, subnet, internet gateway, route table and group
/// are all made, and all deleted again.
#[tokio::test]
async fn create_everything_then_delete_it() {
    let w = World::new("us-east-2").await;
    let started = Instant::now();
    let mut spec = NetworkSpec::new("net-c");
    spec.subnet.gateway = Gateway::Internet;
    spec.security_group.rules = rules();

    let out = w.ec2.ensure_network(&spec).await.unwrap();
    eprintln!("scenario c: first ensure took {:?}", started.elapsed());
    assert_eq!(out.region, "us-east-2");
    assert_eq!(out.vpc.cidr_block, cidr("10.0.0.0/16"));
    assert_eq!(out.vpc.ownership, Ownership::Managed);
    assert_eq!(out.subnet.vpc_id, out.vpc.vpc_id);
    assert_eq!(out.subnet.cidr_block, cidr("10.0.0.0/24"));
    assert!(
        out.subnet.availability_zone.starts_with("us-east-2"),
        "{}",
        out.subnet.availability_zone
    );
    assert!(out.subnet.map_public_ip_on_launch);
    assert_eq!(out.subnet.ownership, Ownership::Managed);
    let igw = out
        .subnet
        .internet_gateway_id
        .clone()
        .expect("an internet gateway");
    let rtb = out.subnet.route_table_id.clone().expect("a route table");
    assert_eq!(out.security_group.vpc_id, out.vpc.vpc_id);
    assert_eq!(
        out.security_group.group_name,
        "net-c-security_group[vpc1-default]"
    );
    assert_eq!(out.security_group.rules, rules());
    assert_eq!(out.security_group.ownership, Ownership::Managed);

    // Again: the same resources, nothing new.
    let t = Instant::now();
    let again = w.ec2.ensure_network(&spec).await.unwrap();
    eprintln!("scenario c: second ensure took {:?}", t.elapsed());
    assert_eq!(again, out);
    let mine = || vec![Raw::service_filter("net-c")];
    assert_eq!(w.raw.vpc_ids(mine()).await, vec![out.vpc.vpc_id.clone()]);
    assert_eq!(
        w.raw.subnet_ids(mine()).await,
        vec![out.subnet.subnet_id.clone()]
    );
    assert_eq!(
        w.raw.group_ids(mine()).await,
        vec![out.security_group.group_id.clone()]
    );
    assert_eq!(w.raw.gateway_ids(mine()).await, vec![igw.clone()]);
    assert_eq!(w.raw.route_table_ids(mine()).await, vec![rtb]);
    assert_eq!(
        w.raw
            .gateway_ids(vec![filter("attachment.vpc-id", &out.vpc.vpc_id)])
            .await,
        vec![igw]
    );

    // A rule edit is applied to the group dtk made.
    let mut edited = spec.clone();
    edited.security_group.rules =
        vec![SecurityGroupRule::parse("tcp", "443", "0.0.0.0/0").unwrap()];
    let out2 = w.ec2.ensure_network(&edited).await.unwrap();
    assert_eq!(out2.security_group.group_id, out.security_group.group_id);
    assert_eq!(out2.security_group.rules, edited.security_group.rules);

    let t = Instant::now();
    let deleted = w.ec2.delete_network(&spec, &out).await.unwrap();
    eprintln!(
        "scenario c: delete took {:?}; whole scenario {:?}",
        t.elapsed(),
        started.elapsed()
    );
    assert_eq!(
        deleted,
        NetworkDeletion {
            security_group: Deletion::Deleted,
            subnet: Deletion::Deleted,
            vpc: Deletion::Deleted
        }
    );
    assert!(w.raw.vpc_ids(mine()).await.is_empty());
    assert!(w.raw.subnet_ids(mine()).await.is_empty());
    assert!(w.raw.group_ids(mine()).await.is_empty());
    assert!(w.raw.gateway_ids(mine()).await.is_empty());
    assert!(w.raw.route_table_ids(mine()).await.is_empty());
    // The region's default VPC is untouched.
    assert_eq!(
        w.raw
            .vpc_ids(vec![filter("is-default", "true")])
            .await
            .len(),
        1
    );

    // Deleting again finds nothing to do.
    let deleted = w.ec2.delete_network(&spec, &out).await.unwrap();
    assert_eq!(
        deleted,
        NetworkDeletion {
            security_group: Deletion::AlreadyGone,
            subnet: Deletion::AlreadyGone,
            vpc: Deletion::AlreadyGone
        }
    );
}

/// A run that stopped after making the VPC: the next run adopts it by its tags.
#[tokio::test]
async fn a_rerun_after_a_crash_adopts_what_was_made() {
    let w = World::new("us-west-1").await;
    let spec = NetworkSpec::new("net-crash");
    let vpc = w
        .ec2
        .ensure_vpc(&spec.vpc_owner(), &spec.vpc)
        .await
        .unwrap();
    // ... crash here; then the whole ensure runs again.
    let out = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(out.vpc, vpc);
    assert_eq!(
        w.raw.vpc_ids(vec![Raw::service_filter("net-crash")]).await,
        vec![vpc.vpc_id.clone()]
    );
    // gateway: none makes no gateway and no route table.
    assert_eq!(out.subnet.internet_gateway_id, None);
    assert!(!out.subnet.map_public_ip_on_launch);
    assert!(
        w.raw
            .gateway_ids(vec![Raw::service_filter("net-crash")])
            .await
            .is_empty()
    );

    // A changed CIDR block for a VPC that exists is refused, naming the VPC.
    let mut other = spec.clone();
    other.vpc.cidr_block = Some(cidr("10.9.0.0/16"));
    let err = w.ec2.ensure_network(&other).await.unwrap_err();
    assert!(
        matches!(
            err,
            AwsError::Conflict {
                kind: ResourceKind::Vpc,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(chain(&err).contains(&vpc.vpc_id), "{}", chain(&err));

    w.ec2.delete_network(&spec, &out).await.unwrap();
    assert!(
        w.raw
            .vpc_ids(vec![Raw::service_filter("net-crash")])
            .await
            .is_empty()
    );
}

/// Scenario (b) by length: an existing VPC (with a subnet and an internet gateway of its
/// own); dtk makes a subnet in the first free /24 and a group by name, routes through the
/// VPC's gateway, and deletes only its subnet, route table and group.
#[tokio::test]
async fn existing_vpc_subnet_by_length() {
    let w = World::new("eu-west-1").await;
    let vpc_id = w.raw.create_vpc("10.20.0.0/16").await;
    let their_subnet = w.raw.create_subnet(&vpc_id, "10.20.0.0/24").await;
    let their_igw = w.raw.create_attached_gateway(&vpc_id).await;

    let mut spec = NetworkSpec::new("net-b1");
    spec.vpc.vpc_id = Some(vpc_id.clone());
    spec.subnet.prefix_len = Some(24);
    spec.subnet.gateway = Gateway::Internet;
    spec.security_group.group_name = Some("app-sg".to_owned());
    spec.security_group.rules = rules();

    let out = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(out.vpc.vpc_id, vpc_id);
    assert_eq!(out.vpc.ownership, Ownership::External);
    assert_eq!(out.subnet.cidr_block, cidr("10.20.1.0/24"));
    assert_eq!(out.subnet.ownership, Ownership::Managed);
    assert!(!out.subnet.availability_zone.is_empty());
    assert_eq!(
        out.subnet.internet_gateway_id.as_deref(),
        Some(their_igw.as_str())
    );
    assert_eq!(out.security_group.group_name, "app-sg");
    assert_eq!(out.security_group.ownership, Ownership::Managed);
    assert_eq!(out.security_group.rules, rules());

    let again = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(again, out);
    let in_vpc = || vec![filter("vpc-id", &vpc_id)];
    let mut subnets = w.raw.subnet_ids(in_vpc()).await;
    subnets.sort();
    let mut want = vec![their_subnet.clone(), out.subnet.subnet_id.clone()];
    want.sort();
    assert_eq!(subnets, want);
    assert_eq!(
        w.raw
            .group_ids(vec![filter("group-name", "app-sg")])
            .await
            .len(),
        1
    );

    let deleted = w.ec2.delete_network(&spec, &out).await.unwrap();
    assert_eq!(
        deleted,
        NetworkDeletion {
            security_group: Deletion::Deleted,
            subnet: Deletion::Deleted,
            vpc: Deletion::LeftAlone
        }
    );
    assert_eq!(
        w.raw.vpc_ids(vec![filter("vpc-id", &vpc_id)]).await,
        vec![vpc_id.clone()]
    );
    assert_eq!(w.raw.subnet_ids(in_vpc()).await, vec![their_subnet]);
    assert_eq!(
        w.raw
            .gateway_ids(vec![filter("attachment.vpc-id", &vpc_id)])
            .await,
        vec![their_igw]
    );
    assert!(
        w.raw
            .route_table_ids(vec![Raw::service_filter("net-b1")])
            .await
            .is_empty()
    );
    assert!(
        w.raw
            .group_ids(vec![filter("group-name", "app-sg")])
            .await
            .is_empty()
    );
}

/// Scenario (b) by CIDR, in a VPC without a gateway: dtk makes the gateway too (and
/// deletes it with the subnet). A group named like an existing one is used as it is.
#[tokio::test]
async fn existing_vpc_subnet_by_cidr() {
    let w = World::new("eu-west-2").await;
    let vpc_id = w.raw.create_vpc("10.30.0.0/16").await;
    let their_group = w.raw.create_group(&vpc_id, "shared-sg").await;

    let mut spec = NetworkSpec::new("net-b2");
    spec.vpc.vpc_id = Some(vpc_id.clone());
    spec.subnet.cidr_block = Some(cidr("10.30.5.0/24"));
    spec.subnet.gateway = Gateway::Internet;
    spec.security_group.group_name = Some("shared-sg".to_owned());
    spec.security_group.rules = rules();

    let out = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(out.subnet.cidr_block, cidr("10.30.5.0/24"));
    assert_eq!(out.subnet.ownership, Ownership::Managed);
    let igw = out.subnet.internet_gateway_id.clone().expect("a gateway");
    assert_eq!(
        w.raw.gateway_ids(vec![Raw::service_filter("net-b2")]).await,
        vec![igw.clone()]
    );
    assert_eq!(out.security_group.group_id, their_group);
    assert_eq!(out.security_group.ownership, Ownership::External);
    assert!(
        out.security_group.rules.is_empty(),
        "a group dtk did not make is not changed"
    );

    let again = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(
        w.raw
            .subnet_ids(vec![filter("vpc-id", &vpc_id)])
            .await
            .len(),
        1
    );

    // A block outside the VPC, or overlapping a subnet, is refused naming the VPC.
    let mut outside = spec.clone();
    outside.subnet_component = "vpc_subnet[other]".to_owned();
    outside.subnet.cidr_block = Some(cidr("10.31.0.0/24"));
    let err = w
        .ec2
        .ensure_subnet(&outside.subnet_owner(), &out.vpc, &outside.subnet)
        .await
        .unwrap_err();
    assert_eq!(
        chain(&err),
        format!("vpc {vpc_id}: its block 10.30.0.0/16 does not contain subnet block 10.31.0.0/24")
    );
    outside.subnet.cidr_block = Some(cidr("10.30.5.128/25"));
    let err = w
        .ec2
        .ensure_subnet(&outside.subnet_owner(), &out.vpc, &outside.subnet)
        .await
        .unwrap_err();
    assert_eq!(
        chain(&err),
        format!(
            "vpc {vpc_id}: subnet block 10.30.5.128/25 overlaps its existing subnet 10.30.5.0/24"
        )
    );

    let deleted = w.ec2.delete_network(&spec, &out).await.unwrap();
    assert_eq!(
        deleted,
        NetworkDeletion {
            security_group: Deletion::LeftAlone,
            subnet: Deletion::Deleted,
            vpc: Deletion::LeftAlone
        }
    );
    assert!(
        w.raw
            .gateway_ids(vec![filter("attachment.vpc-id", &vpc_id)])
            .await
            .is_empty()
    );
    assert_eq!(
        w.raw
            .group_ids(vec![filter("group-id", &their_group)])
            .await,
        vec![their_group]
    );
    assert!(
        w.raw
            .subnet_ids(vec![filter("vpc-id", &vpc_id)])
            .await
            .is_empty()
    );
}

/// Scenario (a): an existing subnet and group are used as they are and never deleted;
/// the outputs are filled all the same.
#[tokio::test]
async fn existing_subnet_and_group_are_used_as_they_are() {
    let w = World::new("eu-central-1").await;
    let vpc_id = w.raw.create_vpc("172.20.0.0/16").await;
    let subnet_id = w.raw.create_subnet(&vpc_id, "172.20.3.0/24").await;
    let group_id = w.raw.create_group(&vpc_id, "theirs").await;

    let mut spec = NetworkSpec::new("net-a");
    spec.subnet.subnet_id = Some(subnet_id.clone());
    spec.subnet.gateway = Gateway::Internet;
    spec.security_group.group_id = Some(group_id.clone());
    spec.security_group.rules = rules();

    let out = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(out.vpc.vpc_id, vpc_id);
    assert_eq!(out.vpc.cidr_block, cidr("172.20.0.0/16"));
    assert_eq!(out.subnet.subnet_id, subnet_id);
    assert_eq!(out.subnet.cidr_block, cidr("172.20.3.0/24"));
    assert!(out.subnet.availability_zone.starts_with("eu-central-1"));
    assert_eq!(
        out.subnet.internet_gateway_id, None,
        "an existing subnet's routing is not changed"
    );
    assert_eq!(out.security_group.group_id, group_id);
    assert_eq!(out.security_group.group_name, "theirs");
    assert!(out.security_group.rules.is_empty());
    for o in [
        out.vpc.ownership,
        out.subnet.ownership,
        out.security_group.ownership,
    ] {
        assert_eq!(o, Ownership::External);
    }
    assert_eq!(w.ec2.ensure_network(&spec).await.unwrap(), out);
    assert!(
        w.raw
            .vpc_ids(vec![Raw::service_filter("net-a")])
            .await
            .is_empty()
    );
    assert!(
        w.raw
            .gateway_ids(vec![Raw::service_filter("net-a")])
            .await
            .is_empty()
    );

    let deleted = w.ec2.delete_network(&spec, &out).await.unwrap();
    assert_eq!(
        deleted,
        NetworkDeletion {
            security_group: Deletion::LeftAlone,
            subnet: Deletion::LeftAlone,
            vpc: Deletion::LeftAlone
        }
    );
    assert_eq!(
        w.raw
            .subnet_ids(vec![filter("subnet-id", &subnet_id)])
            .await,
        vec![subnet_id.clone()]
    );
    assert_eq!(
        w.raw.group_ids(vec![filter("group-id", &group_id)]).await,
        vec![group_id]
    );

    // A subnet id that does not exist is an error naming it.
    spec.subnet.subnet_id = Some("subnet-0000000000000dead".to_owned());
    let err = w.ec2.ensure_network(&spec).await.unwrap_err();
    assert_eq!(
        chain(&err),
        "subnet subnet-0000000000000dead does not exist"
    );
}

/// A cancelled client stops before its next request, and a later run adopts what the
/// cancelled one made.
#[tokio::test]
async fn a_cancelled_run_stops_and_the_next_one_adopts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let w = World::new("eu-north-1").await;
    let spec = NetworkSpec::new("net-cancel");
    let flag = Arc::new(AtomicBool::new(true));
    let cancelled = w.ec2.with_cancel({
        let flag = flag.clone();
        move || flag.load(Ordering::SeqCst)
    });
    let err = cancelled.ensure_network(&spec).await.unwrap_err();
    assert!(matches!(err, AwsError::Cancelled), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        w.raw
            .vpc_ids(vec![Raw::service_filter("net-cancel")])
            .await
            .is_empty()
    );

    flag.store(false, Ordering::SeqCst);
    let vpc = cancelled
        .ensure_vpc(&spec.vpc_owner(), &spec.vpc)
        .await
        .unwrap();
    let out = w.ec2.ensure_network(&spec).await.unwrap();
    assert_eq!(out.vpc.vpc_id, vpc.vpc_id);
    w.ec2.delete_network(&spec, &out).await.unwrap();
}
