//! Images resolved by describe-images name filters. moto's AMI ids change between its
//! releases, so images are found by name, as users find them on AWS.

use std::collections::BTreeMap;

use dtk_target_aws::{AwsError, ImageError, ImageFilter};

use crate::World;

pub fn ubuntu_filter() -> ImageFilter {
    ImageFilter {
        name: "ubuntu".to_owned(),
        name_pattern: "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*".to_owned(),
        owners: Vec::new(),
        architecture: Some("x86_64".to_owned()),
        sizes: BTreeMap::from([("small".to_owned(), "t3.small".to_owned())]),
        ssh_user: Some("ubuntu".to_owned()),
    }
}

#[tokio::test]
async fn image_lookup_by_name_filter() {
    let w = World::new("ap-northeast-1").await;
    let image = w.ec2.find_image(&ubuntu_filter()).await.unwrap();
    assert!(image.image_id.starts_with("ami-"), "{image:?}");
    assert!(
        image.name.starts_with("ubuntu/images/hvm-ssd/ubuntu-"),
        "{image:?}"
    );

    let map = w
        .ec2
        .resolve_image_filters(&[ubuntu_filter()])
        .await
        .unwrap();
    let r = map.resolve("ap-northeast-1", "ubuntu", "small").unwrap();
    assert_eq!(r.image_id, image.image_id);
    assert_eq!(r.instance_type, "t3.small");
    let r = map.resolve("ap-northeast-1", "ubuntu", "t3.nano").unwrap();
    assert_eq!(r.instance_type, "t3.nano");

    let none = ImageFilter {
        name: "nothing".to_owned(),
        name_pattern: "no-such-image-*".to_owned(),
        ..ubuntu_filter()
    };
    let err = w.ec2.find_image(&none).await.unwrap_err();
    assert!(
        matches!(err, AwsError::Image(ImageError::NoMatch { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"no image in ap-northeast-1 matches name filter "no-such-image-*" for image "nothing""#
    );
}
