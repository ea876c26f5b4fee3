//! Job types: one module per controller. A controller validates a request (filling defaults:
//! the normalized params are what the job ID hashes) and expands it into task specs.

pub mod cog_conversion;
pub mod hello_world;
pub mod list_container;
pub mod params;
pub mod sync_container;
pub mod synthetic;
pub mod tiled_raster;

use engine::Registry;

use services::Services;

/// Every job type with the handlers it needs.
pub fn registry(services: &Services) -> Registry {
    let registry = Registry::default()
        .with_controller(hello_world::HelloWorld)
        .with_controller(synthetic::Synthetic)
        .with_controller(list_container::ListContainer {
            services: services.clone(),
        })
        .with_controller(cog_conversion::CogConversion {
            services: services.clone(),
        })
        .with_controller(sync_container::SyncContainer {
            services: services.clone(),
        })
        .with_controller(tiled_raster::TiledRaster(services.clone()));
    services::register(registry, services)
}

#[cfg(test)]
mod tests {
    use engine::Controller;
    use serde_json::{Value, json};

    use super::*;

    #[track_caller]
    fn check(controller: &dyn Controller, params: Value, expected: Result<Value, &str>) {
        let got = controller.validate(params).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned));
    }

    /// Each job type's params schema comes from the declarations `validate` runs: for a valid
    /// request, the normalized params have exactly the schema's properties (some optional
    /// ones may be left out), the required ones were given, and every default the schema
    /// states is the one `validate` filled in.
    #[test]
    fn params_schemas_describe_what_validate_accepts() {
        let registry = registry(&services::Services::local("unused"));
        for (job_type, given) in [
            ("hello_world", json!({})),
            ("synthetic", json!({"n": 2})),
            ("list_container", json!({"container": "c"})),
            (
                "sync_container",
                json!({"container": "c", "collection_id": "x"}),
            ),
            (
                "cog_conversion",
                json!({"container": "c", "blob": "a.tif", "output_container": "o"}),
            ),
            (
                "tiled_raster",
                json!({"container": "c", "blob": "a.tif", "output_container": "o", "min_zoom": 1, "max_zoom": 2}),
            ),
        ] {
            let c = registry.controller(job_type).unwrap();
            let schema = c.params_schema();
            assert_eq!(schema["type"], "object", "{job_type}");
            assert_eq!(schema["additionalProperties"], false, "{job_type}");
            let properties = schema["properties"].as_object().unwrap();
            let normalized = c.validate(given.clone()).unwrap();
            for (field, value) in normalized.as_object().unwrap() {
                let declared = properties
                    .get(field)
                    .unwrap_or_else(|| panic!("{job_type}: {field} not in the schema"));
                if given.get(field).is_none() {
                    if let Some(default) = declared.get("default") {
                        assert_eq!(default, value, "{job_type}: default of {field}");
                    }
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let field = required.as_str().unwrap();
                assert!(
                    given.get(field).is_some(),
                    "{job_type}: {field} is required"
                );
                let mut without = given.clone();
                without.as_object_mut().unwrap().remove(field);
                assert!(c.validate(without).is_err(), "{job_type} without {field}");
            }
        }
        assert_eq!(registry.job_types().count(), 6, "every job type is covered");
    }

    #[test]
    fn hello_world_params() {
        let c = &hello_world::HelloWorld;
        check(
            c,
            json!({"n": 1000}),
            Ok(json!({"fail_every": 0, "message": "hello", "n": 1000})),
        );
        check(
            c,
            json!({}),
            Ok(json!({"fail_every": 0, "message": "hello", "n": 3})),
        );
        check(
            c,
            Value::Null,
            Ok(json!({"fail_every": 0, "message": "hello", "n": 3})),
        );
        check(
            c,
            json!({"n": 5.0, "message": "hé"}),
            Ok(json!({"fail_every": 0, "message": "hé", "n": 5})),
        );
        check(
            c,
            json!({"n": 0}),
            Err("invalid params: n: must be an integer between 1 and 100000, got 0"),
        );
        check(
            c,
            json!({"n": 100001}),
            Err("invalid params: n: must be an integer between 1 and 100000, got 100001"),
        );
        check(
            c,
            json!({"n": "3"}),
            Err("invalid params: n: must be an integer between 1 and 100000, got \"3\""),
        );
        check(
            c,
            json!({"n": 2.5}),
            Err("invalid params: n: must be an integer between 1 and 100000, got 2.5"),
        );
        check(
            c,
            json!({"message": ""}),
            Err("invalid params: message: must be 1 to 200 characters long, got 0"),
        );
        check(
            c,
            json!({"message": "x".repeat(201)}),
            Err("invalid params: message: must be 1 to 200 characters long, got 201"),
        );
        check(
            c,
            json!({"message": 7}),
            Err("invalid params: message: must be a string, got a number"),
        );
        check(
            c,
            json!({"fail_every": -1}),
            Err("invalid params: fail_every: must be an integer between 0 and 100000, got -1"),
        );
        check(
            c,
            json!({"n": 3, "colour": "red"}),
            Err(
                "invalid params: colour: unknown field (known fields: [\"fail_every\", \"message\", \"n\"])",
            ),
        );
        check(
            c,
            json!([1]),
            Err("invalid params: params: must be a JSON object, got an array"),
        );
    }

    #[test]
    fn same_request_same_job() {
        let engine_registry = registry(&Services::local("data"));
        let c = engine_registry.controller("hello_world").unwrap();
        let a = c.validate(json!({})).unwrap();
        let b = c.validate(json!({"n": 3, "message": "hello"})).unwrap();
        assert_eq!(
            engine::ids::job_id("hello_world", 1, &a).unwrap(),
            engine::ids::job_id("hello_world", 1, &b).unwrap()
        );
    }

    #[test]
    fn synthetic_params_and_plans() {
        let c = &synthetic::Synthetic;
        check(
            c,
            json!({}),
            Ok(json!({"label": "", "n": 10, "shape": "fan_out", "sleep_ms": 0})),
        );
        check(
            c,
            json!({"shape": "ring"}),
            Err("invalid params: shape: must be one of [\"fan_out\", \"chain\"], got \"ring\""),
        );
        // An optional integer: absent and null record nothing (the same job as before it
        // existed); given, it is checked and kept.
        for absent in [json!({}), json!({"transient_failures": null})] {
            check(
                c,
                absent,
                Ok(json!({"label": "", "n": 10, "shape": "fan_out", "sleep_ms": 0})),
            );
        }
        check(
            c,
            json!({"transient_failures": 2}),
            Ok(
                json!({"label": "", "n": 10, "shape": "fan_out", "sleep_ms": 0, "transient_failures": 2}),
            ),
        );
        check(
            c,
            json!({"transient_failures": 11}),
            Err("invalid params: transient_failures: must be an integer between 0 and 10, got 11"),
        );
        let id = engine::ids::job_id("synthetic", 1, &json!({})).unwrap();
        let chain = c.plan(&id, &json!({"shape": "chain", "n": 3})).unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[2].depends_on[0].key, engine::TaskKey::Int(1));
        assert_eq!(
            c.plan(&id, &json!({"shape": "fan_out", "n": 3}))
                .unwrap()
                .len(),
            4
        );
    }
}
