//! Hashes of the shipped examples and packs, computed by the Python
//! reference (`hash_contract`, `_hash_policy`). Shared by several tests.

/// `(path relative to the crate root, sha256)`.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "examples/contracts/ci-test-run.json",
        "e3182d4b64de05d9a7639880b579018d9eb7cbaa52749860b9672e5d8cf9331d",
    ),
    (
        "examples/contracts/deploy-release.json",
        "471cee49f74a7e49baf2d941388a25841a1bbf86faa706875d0840a7663f6028",
    ),
    (
        "examples/contracts/fetch-artifact-index.json",
        "b8e3552919de3f6961ad40b5f1c1951a6b59cdedfc825e94f6998c75e216be4b",
    ),
    (
        "examples/contracts/force-push.json",
        "9b85f3eb4d3c24b74d04876e990ae44e829fe3bbaf657ab2bc1500e168491772",
    ),
    (
        "examples/contracts/list-repo.json",
        "5a024e0f0007c896d04cd87fc6ac716bc271e616f4d8c5f439d285f48c4160c5",
    ),
    (
        "examples/contracts/refund-payment.json",
        "a629ddb28591218730448b6832f8caed9dc391ea1cff647e0b821693e386c736",
    ),
    (
        "examples/contracts/todo-histogram.json",
        "bd2036923f1a5774362f14a331469eb83ba6e6867e1b5b3f841cb95f652df70e",
    ),
    (
        "policies/ci-build-test.yaml",
        "a3c65522f47945286332e0fcbf731a97556d47964a82f8ba7398a114e8929fc7",
    ),
    (
        "policies/readonly-dev.yaml",
        "f582b66244ad7f87ebe80fd181a3ae5fa49e7260017fd837746a7793a5b5baf8",
    ),
    (
        "policies/regulated-approvals.yaml",
        "99a8d4bf641a057e5d47279491de928369d8b1b9be50c9d887b80ee21bab8a25",
    ),
];
