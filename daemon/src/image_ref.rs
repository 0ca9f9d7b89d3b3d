//! What an image reference says about pulling it: which registry serves it,
//! whether a local copy will do, and which registry secret fits.

use forklet_state::store::RegistrySecret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    IfNotPresent,
    /// `:latest` and untagged images may have moved since the last pull.
    Always,
}

pub fn pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent; // a digest never moves
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

/// The registry host of `image`, as Docker reads it: the first path part
/// when it looks like a host (`.`, `:` or `localhost`), else Docker Hub.
pub fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `https://my-registry.com/v1/` → `my-registry.com`; Docker Hub's aliases → `docker.io`.
fn host(server: &str) -> &str {
    let server = server.trim();
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let server = server.split('/').next().unwrap_or(server);
    match server {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The first of `secrets` whose server is `image`'s registry.
pub fn credentials_for<'a>(
    image: &str,
    secrets: &'a [RegistrySecret],
) -> Option<&'a RegistrySecret> {
    let registry = registry(image);
    secrets.iter().find(|s| host(&s.server) == registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_untagged_images_are_always_pulled() {
        for (image, policy) in [
            ("my-registry/my-module:v1.0.0", PullPolicy::IfNotPresent),
            ("127.0.0.1:5000/org/m:1", PullPolicy::IfNotPresent),
            ("my-registry/my-module:latest", PullPolicy::Always),
            ("my-registry/my-module", PullPolicy::Always),
            ("127.0.0.1:5000/org/m", PullPolicy::Always),
            ("m@sha256:0123", PullPolicy::IfNotPresent),
        ] {
            assert_eq!(pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn registries_are_read_as_docker_reads_them() {
        for (image, expected) in [
            ("ubuntu", "docker.io"),
            ("myusername/my-module:v1", "docker.io"),
            ("ghcr.io/myorg/my-module:v1.0.0", "ghcr.io"),
            ("127.0.0.1:5000/m:1", "127.0.0.1:5000"),
            ("localhost/m", "localhost"),
        ] {
            assert_eq!(registry(image), expected, "{image}");
        }
    }

    #[test]
    fn a_secret_fits_by_server_in_any_usual_spelling() {
        let secret = |name: &str, server: &str| RegistrySecret {
            name: name.into(),
            server: server.into(),
            username: "u".into(),
            password: "p".into(),
        };
        let secrets = [
            secret("hub", "https://index.docker.io/v1/"),
            secret("private", "https://my-private-registry.com"),
        ];
        assert_eq!(
            credentials_for("my-private-registry.com/org/m:1", &secrets).map(|s| s.name.as_str()),
            Some("private")
        );
        assert_eq!(
            credentials_for("myuser/m:1", &secrets).map(|s| s.name.as_str()),
            Some("hub")
        );
        assert_eq!(credentials_for("ghcr.io/o/m:1", &secrets), None);
    }
}
