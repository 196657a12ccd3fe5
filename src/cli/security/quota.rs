//! `icestream security quota alter|describe`: client quotas through AlterClientQuotas and
//! DescribeClientQuotas.

use super::*;

/// The entity of `--name TYPE=NAME` and `--default TYPE` flags.
fn entity(names: &[String], defaults: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for n in names {
        let (t, v) = n
            .split_once('=')
            .ok_or_else(|| anyhow!("--name {n}: use user=NAME or client-id=NAME"))?;
        out.push((entity_type(t)?, Some(v.to_string())));
    }
    for d in defaults {
        out.push((entity_type(d)?, None));
    }
    Ok(out)
}

fn entity_type(t: &str) -> Result<String> {
    match t {
        "user" => Ok("user".into()),
        "client-id" | "client_id" | "clientid" => Ok("client-id".into()),
        _ => bail!("entity type '{t}': use user or client-id"),
    }
}

pub(super) async fn quota_alter(
    args: &ClientArgs,
    names: &[String],
    defaults: &[String],
    add: &[String],
    delete: &[String],
) -> Result<()> {
    let ent = entity(names, defaults)?;
    if ent.is_empty() {
        bail!(
            "give the entity: --name user=NAME, --name client-id=NAME or --default user|client-id"
        );
    }
    if add.is_empty() && delete.is_empty() {
        bail!("give --add KEY=VALUE or --delete KEY");
    }
    let mut ops = Vec::new();
    for a in add {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| anyhow!("--add {a}: use KEY=VALUE, e.g. producer_byte_rate=1048576"))?;
        let v: f64 = v
            .parse()
            .map_err(|_| anyhow!("--add {a}: '{v}' is not a number"))?;
        ops.push(OpData::default().with_key(sb(k)).with_value(v));
    }
    for k in delete {
        ops.push(OpData::default().with_key(sb(k.as_str())).with_remove(true));
    }
    let entry = alter_client_quotas_request::EntryData::default()
        .with_entity(
            ent.iter()
                .map(|(t, n)| {
                    alter_client_quotas_request::EntityData::default()
                        .with_entity_type(sb(t.as_str()))
                        .with_entity_name(n.as_deref().map(sb))
                })
                .collect(),
        )
        .with_ops(ops);
    let mut client = Client::connect(args).await?;
    let resp = client
        .any()
        .send(&AlterClientQuotasRequest::default().with_entries(vec![entry]))
        .await?;
    for e in &resp.entries {
        if e.error_code != 0 {
            return Err(refused(
                "altering quotas",
                e.error_code,
                e.error_message.as_ref(),
            ));
        }
    }
    let desc = entity_text(ent.iter().map(|(t, n)| (t.as_str(), n.as_deref())));
    done(
        args,
        json!({ "entity": desc, "altered": true }),
        &format!("Altered quotas of {desc}."),
    )
}

fn entity_text<'a>(parts: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    parts
        .map(|(t, n)| match n {
            Some(n) => format!("{t}={n}"),
            None => format!("{t}=<default>"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn quota_describe(
    args: &ClientArgs,
    names: &[String],
    defaults: &[String],
    any: &[String],
    strict: bool,
) -> Result<()> {
    let mut components: Vec<ComponentData> = entity(names, defaults)?
        .into_iter()
        .map(|(t, n)| {
            let c = ComponentData::default().with_entity_type(sb(t));
            match n {
                Some(n) => c.with_match_type(0).with_match(Some(sb(n))),
                None => c.with_match_type(1).with_match(None),
            }
        })
        .collect();
    for t in any {
        components.push(
            ComponentData::default()
                .with_entity_type(sb(entity_type(t)?))
                .with_match_type(2)
                .with_match(None),
        );
    }
    let mut client = Client::connect(args).await?;
    let resp = client
        .any()
        .send(
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict),
        )
        .await?;
    if resp.error_code != 0 {
        return Err(refused(
            "describing quotas",
            resp.error_code,
            resp.error_message.as_ref(),
        ));
    }
    let entries = resp.entries.unwrap_or_default();
    let rows: Vec<(String, Vec<(String, f64)>)> = entries
        .iter()
        .map(|e| {
            let who = entity_text(e.entity.iter().map(|d| {
                (
                    d.entity_type.as_str(),
                    d.entity_name.as_ref().map(|n| n.as_str()),
                )
            }));
            let values = e.values.iter().map(|v| (text(&v.key), v.value)).collect();
            (who, values)
        })
        .collect();
    if args.format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(who, values)| {
                let v: serde_json::Map<String, serde_json::Value> =
                    values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json!({ "entity": who, "values": v })
            })
            .collect();
        emit_json_pretty(&json!({ "quotas": list }))?;
        return Ok(());
    }
    let mut t = Table::new(&["ENTITY", "KEY", "VALUE"]);
    for (who, values) in rows {
        for (k, v) in values {
            t.row(vec![who.clone(), k, format!("{v}")]);
        }
    }
    emit(t.render().trim_end())?;
    Ok(())
}
