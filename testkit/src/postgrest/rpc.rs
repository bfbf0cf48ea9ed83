//! `POST /rest/v1/rpc/<function>` as PostgREST v12 answers it (docs "Functions as RPC";
//! Plan.hs `findProc`, QueryBuilder.hs `callPlanToQuery`, Response.hs):
//!
//! - The JSON object's keys name the arguments. An overload matches when every key is one of
//!   its parameters and every parameter without a default has a key; failing that, a function
//!   with a single json/jsonb parameter gets the whole body. None: 404 PGRST202; several:
//!   300 PGRST203. `Prefer: params=single-object` passes the body to the one json/jsonb
//!   parameter directly.
//! - Arguments are read with `json_to_record` typed by the parameters, so jsonb arguments
//!   arrive as jsonb, numbers keep their precision, and omitted ones take their defaults.
//! - The answer is the result as JSON: a scalar, an object for a single row, an array for
//!   `SETOF`/`TABLE`; 204 without a body for `void`. `Prefer: return=...` is ignored, as
//!   PostgREST ignores it for functions.
//! - One transaction per call, published like table requests; `VOLATILE` functions run
//!   read-write, `STABLE`/`IMMUTABLE` ones read-only. Errors they raise answer in PostgREST's
//!   JSON shape with its status mapping (P0001 400, `PTxxx` xxx, 23505 409, ...).
//!
//! Not served (refused as not implemented): GET, query parameters on function results
//! (filters, `select`, `order`), array bodies, untyped `RETURNS record`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::ApiError;
use super::handler::{Context, Statement};
use super::reply::Reply;
use super::schema::{load_functions, Function, Param, Returns};
use crate::db::quote_ident;

pub(crate) async fn call(cx: &Context<'_>, name: &str) -> Result<Reply, ApiError> {
    if !cx.request.query.is_empty() {
        return Err(ApiError::not_implemented(
            "query parameters on /rpc (filters, select, order on function results)",
        ));
    }
    let body = match cx.body_text()?.trim() {
        // PostgREST calls a function with no arguments when the body is empty.
        "" => "{}",
        body => body,
    };
    let keys: BTreeSet<String> = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(args)) => args.keys().cloned().collect(),
        Ok(Value::Array(_)) => return Err(ApiError::not_implemented("array bodies on /rpc")),
        _ => return Err(ApiError::invalid_body("Empty or invalid json")),
    };
    let mut client = cx.connection().await?;
    // The overload's volatility decides the transaction's access mode, so look it up first.
    let functions = load_functions(&*client, name)
        .await
        .map_err(|err| cx.db_error(err))?;
    let call = choose(name, &functions, &keys, cx.prefer.single_object)?;
    if call.function.returns == Returns::Untyped {
        return Err(ApiError::not_implemented(
            "functions returning untyped record",
        ));
    }
    let transaction = cx.begin(&mut client, !call.function.volatile).await?;
    let row = cx.run(&transaction, &call.statement(name, body)).await?;
    cx.commit(transaction).await?;
    Ok(match call.function.returns {
        Returns::Void => Reply::empty(204),
        _ => Reply::json(200, row.get(0)),
    })
}

/// The chosen overload and the arguments it is called with.
struct Call<'f> {
    function: &'f Function,
    args: Args<'f>,
}

enum Args<'f> {
    /// `f(a := ..., b := ...)` with the parameters the body names.
    Named(Vec<&'f Param>),
    /// `f($1)`: the whole body as the single json/jsonb parameter.
    WholeBody(&'f Param),
}

fn choose<'f>(
    name: &str,
    functions: &'f [Function],
    keys: &BTreeSet<String>,
    single_object: bool,
) -> Result<Call<'f>, ApiError> {
    let single_json = |f: &&Function| {
        f.params.len() == 1 && matches!(f.params[0].type_name.as_str(), "json" | "jsonb")
    };
    let matches_keys = |f: &&Function| {
        let names: BTreeSet<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        keys.iter().all(|k| names.contains(k.as_str()))
            && f.required().iter().all(|p| keys.contains(&p.name))
    };
    let matching: Vec<&Function> = if single_object {
        functions.iter().filter(single_json).collect()
    } else {
        match functions.iter().filter(matches_keys).collect::<Vec<_>>() {
            found if found.is_empty() => functions.iter().filter(single_json).collect(),
            found => found,
        }
    };
    let function = match matching.as_slice() {
        [function] => *function,
        [] => return Err(not_found(name, keys, single_object, functions)),
        several => return Err(ambiguous(name, several)),
    };
    let args = match function.params.as_slice() {
        [param] if single_object || param.name.is_empty() => Args::WholeBody(param),
        params => Args::Named(params.iter().filter(|p| keys.contains(&p.name)).collect()),
    };
    Ok(Call { function, args })
}

impl Call<'_> {
    fn statement(&self, name: &str, body: &str) -> Statement {
        let function = format!("public.{}", quote_ident(name));
        let from = match &self.args {
            Args::WholeBody(param) => format!("{function}($1::text::{})", param.cast_type),
            Args::Named(params) if params.is_empty() => format!("{function}()"),
            Args::Named(params) => {
                let columns: Vec<String> = params
                    .iter()
                    .map(|p| format!("{} {}", quote_ident(&p.name), p.cast_type))
                    .collect();
                let arguments: Vec<String> = params
                    .iter()
                    .map(|p| format!("{0} := pgrst_body.{0}", quote_ident(&p.name)))
                    .collect();
                format!(
                    "json_to_record($1::text::json) AS pgrst_body({}), LATERAL {function}({})",
                    columns.join(", "),
                    arguments.join(", ")
                )
            }
        };
        let composite = self.function.returns == Returns::Composite;
        let (alias, value) = if composite {
            ("pgrst_call", "pgrst_call")
        } else {
            ("pgrst_call(pgrst_scalar)", "pgrst_call.pgrst_scalar")
        };
        let select = if self.function.returns_set {
            format!("coalesce(json_agg({value}), '[]')::text")
        } else {
            format!("coalesce((json_agg({value}) -> 0)::text, 'null')")
        };
        let uses_body = !matches!(&self.args, Args::Named(params) if params.is_empty());
        Statement {
            sql: format!("SELECT {select} FROM {from} AS {alias}"),
            params: uses_body.then(|| body.to_owned()).into_iter().collect(),
        }
    }
}

/// PGRST202, worded as PostgREST v12 words it.
fn not_found(
    name: &str,
    keys: &BTreeSet<String>,
    single_object: bool,
    overloads: &[Function],
) -> ApiError {
    let function = format!("public.{name}");
    let listed = keys.iter().cloned().collect::<Vec<_>>().join(", ");
    let (message, searched) = if single_object {
        (
            format!("Could not find the function {function} in the schema cache"),
            " with a single json/jsonb parameter".to_owned(),
        )
    } else if keys.is_empty() {
        (
            format!(
                "Could not find the function {function} without parameters in the schema cache"
            ),
            " without parameters or with a single unnamed json/jsonb parameter".to_owned(),
        )
    } else {
        let noun = if keys.len() > 1 {
            "parameters"
        } else {
            "parameter"
        };
        (
            format!("Could not find the function {function}({listed}) in the schema cache"),
            format!(" with {noun} {listed} or with a single unnamed json/jsonb parameter"),
        )
    };
    let details = format!(
        "Searched for the function {function}{searched}, but no matches were found in the schema cache."
    );
    let hint = overloads.first().filter(|_| !single_object).map(|f| {
        let mut names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        format!(
            "Perhaps you meant to call the function {function}({})",
            names.join(", ")
        )
    });
    ApiError::full(404, "PGRST202", message, Some(details), hint)
}

/// PGRST203: more than one overload fits the arguments.
fn ambiguous(name: &str, candidates: &[&Function]) -> ApiError {
    let listed: Vec<String> = candidates
        .iter()
        .map(|f| {
            let params: Vec<String> = f
                .params
                .iter()
                .map(|p| format!("{} => {}", p.name, p.type_name))
                .collect();
            format!("public.{name}({})", params.join(", "))
        })
        .collect();
    ApiError::full(
        300,
        "PGRST203",
        format!(
            "Could not choose the best candidate function between: {}",
            listed.join(", ")
        ),
        None,
        Some("Try renaming the parameters or the function itself in the database so function overloading can be resolved".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys_of(body: &Value) -> BTreeSet<String> {
        body.as_object()
            .into_iter()
            .flat_map(|o| o.keys().cloned())
            .collect()
    }

    fn function(params: &[(&str, &str)], defaults: usize) -> Function {
        Function {
            params: params
                .iter()
                .map(|(name, type_name)| Param {
                    name: (*name).to_owned(),
                    type_name: (*type_name).to_owned(),
                    cast_type: format!("pg_catalog.{type_name}"),
                })
                .collect(),
            defaults,
            returns: Returns::Scalar,
            returns_set: false,
            volatile: true,
        }
    }

    fn chosen(functions: &[Function], body: Value, single: bool) -> Result<usize, ApiError> {
        let call = choose("f", functions, &keys_of(&body), single)?;
        Ok(functions
            .iter()
            .position(|f| std::ptr::eq(f, call.function))
            .unwrap_or(usize::MAX))
    }

    #[test]
    fn overloads_are_chosen_by_argument_names() {
        let functions = [
            function(&[("a", "integer")], 0),
            function(&[("a", "integer"), ("b", "text"), ("c", "text")], 1),
            function(&[("", "jsonb")], 0),
        ];
        assert_eq!(chosen(&functions, json!({"a": 1}), false).ok(), Some(0));
        assert_eq!(
            chosen(&functions, json!({"a": 1, "b": "x"}), false).ok(),
            Some(1)
        );
        assert_eq!(
            chosen(&functions, json!({"b": "x", "a": 1, "c": "y"}), false).ok(),
            Some(1)
        );
        // Nothing named fits: the single unnamed jsonb parameter takes the whole body.
        assert_eq!(chosen(&functions, json!({"z": 1}), false).ok(), Some(2));
        assert_eq!(chosen(&functions, json!({"z": 1}), true).ok(), Some(2));
    }

    #[test]
    fn no_match_and_ambiguity_answer_like_postgrest() {
        let functions = [function(&[("b", "integer"), ("a", "integer")], 0)];
        let err = chosen(&functions, json!({"a": 1}), false).expect_err("b missing");
        assert_eq!(
            err.body,
            json!({"code": "PGRST202",
                   "message": "Could not find the function public.f(a) in the schema cache",
                   "details": "Searched for the function public.f with parameter a or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
                   "hint": "Perhaps you meant to call the function public.f(a, b)"})
        );
        assert_eq!(err.status, 404);
        let err = chosen(&[], json!({}), false).expect_err("no function");
        assert_eq!(
            (err.body["message"].as_str(), err.body["hint"].is_null()),
            (
                Some("Could not find the function public.f without parameters in the schema cache"),
                true
            )
        );
        let twins = [
            function(&[("a", "integer")], 0),
            function(&[("a", "text")], 0),
        ];
        let err = chosen(&twins, json!({"a": 1}), false).expect_err("ambiguous");
        assert_eq!(
            (err.status, err.body["code"].as_str()),
            (300, Some("PGRST203"))
        );
        assert_eq!(
            err.body["message"],
            "Could not choose the best candidate function between: public.f(a => integer), public.f(a => text)"
        );
    }
}
