//! The Petstore of `@readme/oas-examples` (installed by `.ci/setup-peers` into
//! `tests/peers/node_modules`), in OpenAPI 3.0 and 3.1, JSON and YAML, imported through
//! [`custos_openapi::load`] as a config would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use custos_core::ToolClass;
use custos_openapi::{load, ApiSpec, Location, Method, OpenApiError, Router};

fn examples() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = repo.join("tests/peers/node_modules/@readme/oas-examples");
    assert!(dir.is_dir(), "{} is missing: run `bash .ci/setup-peers`", dir.display());
    dir
}

/// Every Petstore operation: tool name, method, path and default class.
const PETSTORE: &[(&str, Method, &str, ToolClass)] = &[
    ("addPet", Method::Post, "/pet", ToolClass::Write),
    ("updatePet", Method::Put, "/pet", ToolClass::Write),
    ("findPetsByStatus", Method::Get, "/pet/findByStatus", ToolClass::Read),
    ("findPetsByTags", Method::Get, "/pet/findByTags", ToolClass::Read),
    ("getPetById", Method::Get, "/pet/{petId}", ToolClass::Read),
    ("updatePetWithForm", Method::Post, "/pet/{petId}", ToolClass::Write),
    ("deletePet", Method::Delete, "/pet/{petId}", ToolClass::Privileged),
    ("uploadFile", Method::Post, "/pet/{petId}/uploadImage", ToolClass::Write),
    ("getInventory", Method::Get, "/store/inventory", ToolClass::Read),
    ("placeOrder", Method::Post, "/store/order", ToolClass::Write),
    ("getOrderById", Method::Get, "/store/order/{orderId}", ToolClass::Read),
    ("deleteOrder", Method::Delete, "/store/order/{orderId}", ToolClass::Privileged),
    ("createUser", Method::Post, "/user", ToolClass::Write),
    ("createUsersWithArrayInput", Method::Post, "/user/createWithArray", ToolClass::Write),
    ("createUsersWithListInput", Method::Post, "/user/createWithList", ToolClass::Write),
    ("loginUser", Method::Get, "/user/login", ToolClass::Read),
    ("logoutUser", Method::Get, "/user/logout", ToolClass::Read),
    ("getUserByName", Method::Get, "/user/{username}", ToolClass::Read),
    ("updateUser", Method::Put, "/user/{username}", ToolClass::Write),
    ("deleteUser", Method::Delete, "/user/{username}", ToolClass::Privileged),
];

fn check_petstore(spec: &ApiSpec, which: &str) {
    assert_eq!(spec.title, "Swagger Petstore", "{which}");
    assert_eq!(spec.version, "1.0.0", "{which}");
    let mut got: Vec<_> = spec
        .operations
        .iter()
        .map(|o| (o.tool_name.as_str(), o.method, o.path_template.as_str(), o.default_class()))
        .collect();
    got.sort();
    let mut want = PETSTORE.to_vec();
    want.sort();
    assert_eq!(got, want, "{which}");
    for op in &spec.operations {
        assert_eq!(op.operation_id.as_deref(), Some(op.tool_name.as_str()), "{which}");
    }

    // `addPet`'s body is `#/components/requestBodies/Pet`, whose schema is
    // `#/components/schemas/Pet`, which uses `Category` and `Tag`: all inlined.
    let add = spec.operation("addPet").unwrap();
    let body = add.request_body.as_ref().unwrap();
    assert!(body.required, "{which}");
    assert_eq!(body.content_type, "application/json", "{which}");
    assert_eq!(body.schema["required"], serde_json::json!(["name", "photoUrls"]), "{which}");
    assert_eq!(body.schema["properties"]["category"]["properties"]["name"]["type"], "string", "{which}");
    assert_eq!(body.schema["properties"]["tags"]["items"]["properties"]["id"]["type"], "integer", "{which}");
    let schema = add.input_schema();
    assert_eq!(schema["required"], serde_json::json!(["body"]), "{which}");
    assert!(!schema.to_string().contains("$ref"), "{which}: {schema}");

    // `deletePet` takes the `api_key` header and the `petId` path parameter.
    let delete = spec.operation("deletePet").unwrap();
    let params: Vec<_> = delete.parameters.iter().map(|p| (p.name.as_str(), p.location, p.required)).collect();
    assert_eq!(params, [("api_key", Location::Header, false), ("petId", Location::Path, true)], "{which}");
    assert_eq!(delete.input_schema()["properties"]["petId"]["type"], "integer", "{which}");
    // The form-encoded body of `updatePetWithForm` is its only media type.
    let form = spec.operation("updatePetWithForm").unwrap();
    assert_eq!(form.request_body.as_ref().unwrap().content_type, "application/x-www-form-urlencoded", "{which}");
    let login = spec.operation("loginUser").unwrap();
    assert_eq!(
        login.parameters.iter().map(|p| (p.name.as_str(), p.location)).collect::<Vec<_>>(),
        [("username", Location::Query), ("password", Location::Query)],
        "{which}"
    );

    // And the router puts requests where the Petstore does.
    let router = Router::new(&spec.operations).unwrap();
    let tool = |method: &str, path: &str| {
        let m = router.find(method, path).unwrap_or_else(|e| panic!("{which}: {method} {path}: {e}"));
        (spec.operations[m.operation].tool_name.clone(), m.path_params.into_iter().collect::<Vec<_>>())
    };
    assert_eq!(tool("GET", "/pet/findByStatus").0, "findPetsByStatus");
    assert_eq!(tool("GET", "/pet/42"), ("getPetById".into(), vec![("petId".into(), "42".into())]));
    assert_eq!(tool("DELETE", "/pet/42").0, "deletePet");
    assert_eq!(tool("POST", "/pet/42/uploadImage").0, "uploadFile");
    assert_eq!(tool("GET", "/user/login").0, "loginUser");
    assert_eq!(tool("GET", "/user/alice").0, "getUserByName");
    assert_eq!(router.find("PATCH", "/pet").unwrap_err().status(), 405);
    assert_eq!(router.find("GET", "/pet/%2e%2e/store/inventory").unwrap_err().status(), 400);
}

#[test]
fn the_petstore_imports_from_openapi_3_0_and_3_1_in_json_and_yaml() {
    let dir = examples();
    let mut specs = Vec::new();
    for (version, want) in [("3.0", "3.0"), ("3.1", "3.1")] {
        for file in ["json/petstore.json", "yaml/petstore.yaml"] {
            let source = format!("{version}/{file}");
            let spec = load(&source, &dir).unwrap_or_else(|e| panic!("{source}: {e}"));
            check_petstore(&spec, &source);
            specs.push((want, spec));
        }
    }
    // The JSON and YAML forms of one version read the same.
    assert_eq!(specs[0].1, specs[1].1);
    assert_eq!(specs[2].1, specs[3].1);
}

#[test]
fn swagger_2_is_refused_with_the_files_name() {
    let dir = examples();
    let err = load("2.0/json/petstore.json", &dir).unwrap_err();
    assert!(matches!(err, OpenApiError::Invalid { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("2.0/json/petstore.json: `swagger`: OpenAPI 2.0 (Swagger) is not supported"), "{text}");
}

#[test]
fn load_names_what_it_cannot_read() {
    let dir = examples();
    let missing = load("3.1/json/nope.json", &dir).unwrap_err().to_string();
    assert!(
        missing.starts_with("cannot read openapi document `") && missing.contains("3.1/json/nope.json"),
        "{missing}"
    );
    let url = load("https://billing.example/openapi.json", &dir).unwrap_err().to_string();
    assert!(url.contains("`https://billing.example/openapi.json`") && url.contains("reads files only"), "{url}");

    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    std::fs::write(tmp.join("broken.yaml"), "openapi: 3.1.0\ninfo:\n  title: [\n").unwrap();
    let broken = load("broken.yaml", tmp).unwrap_err().to_string();
    assert!(broken.contains("broken.yaml:") && broken.contains(":4:1: "), "{broken}");
    // Without a known extension the first character decides: this is JSON.
    std::fs::write(tmp.join("api.txt"), "{\"openapi\": \"3.1.0\", \"paths\": {\"/a\": {\"get\": {}}}}").unwrap();
    assert_eq!(load("api.txt", tmp).unwrap().operations[0].tool_name, "get_a");
    std::fs::write(tmp.join("big.json"), vec![b' '; 16 * 1024 * 1024 + 1]).unwrap();
    let big = load("big.json", tmp).unwrap_err().to_string();
    assert!(big.contains("big.json") && big.contains("larger than 16777216 bytes"), "{big}");
}
