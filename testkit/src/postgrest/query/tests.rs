use super::*;

fn filter(column: &str, negated: bool, op: FilterOp) -> Condition {
    Condition::Filter(Filter {
        column: column.to_owned(),
        negated,
        op,
    })
}

fn cmp(op: CompareOp, value: &str) -> FilterOp {
    FilterOp::Compare(op, value.to_owned())
}

#[test]
fn simple_filters_take_the_rest_of_the_value_verbatim() {
    let params = parse("note_text=eq.a,b.c&days=not.gt.3&x=is.NULL").expect("parses");
    assert_eq!(
        params.conditions,
        vec![
            filter("note_text", false, cmp(CompareOp::Eq, "a,b.c")),
            filter("days", true, cmp(CompareOp::Gt, "3")),
            filter("x", false, FilterOp::Is(IsValue::Null)),
        ]
    );
}

#[test]
fn plus_is_a_space_and_percent_escapes_decode() {
    let params =
        parse("t=eq.2024-01-01T00:00:00+00:00&u=eq.2024-01-01T00:00:00%2B00:00").expect("parses");
    assert_eq!(
        params.conditions,
        vec![
            filter("t", false, cmp(CompareOp::Eq, "2024-01-01T00:00:00 00:00")),
            filter("u", false, cmp(CompareOp::Eq, "2024-01-01T00:00:00+00:00")),
        ]
    );
}

#[test]
fn in_lists_honour_quotes() {
    let params = parse(r#"id=in.(1,2,"c,d","e\"f")"#).expect("parses");
    assert_eq!(
        params.conditions,
        vec![filter(
            "id",
            false,
            FilterOp::In(vec!["1".into(), "2".into(), "c,d".into(), "e\"f".into()])
        )]
    );
}

#[test]
fn keyset_logic_tree_with_nested_and() {
    let query = "or=(updated_at.gt.2024-01-01T10:00:00.5%2B00:00,and(updated_at.eq.2024-01-01T10:00:00.5%2B00:00,note_uid.gt.4b0e))";
    let params = parse(query).expect("parses");
    let ts = "2024-01-01T10:00:00.5+00:00";
    assert_eq!(
        params.conditions,
        vec![Condition::Logic {
            negated: false,
            op: LogicOp::Or,
            children: vec![
                filter("updated_at", false, cmp(CompareOp::Gt, ts)),
                Condition::Logic {
                    negated: false,
                    op: LogicOp::And,
                    children: vec![
                        filter("updated_at", false, cmp(CompareOp::Eq, ts)),
                        filter("note_uid", false, cmp(CompareOp::Gt, "4b0e")),
                    ],
                },
            ],
        }]
    );
}

#[test]
fn logic_values_may_be_quoted_or_arrays_and_children_negated() {
    let params =
        parse(r#"not.and=(a.eq."x,y",b.in.(1,2),not.or(c.is.true,d.eq.{1,2}))"#).expect("parses");
    let Condition::Logic {
        negated,
        op,
        children,
    } = &params.conditions[0]
    else {
        panic!("expected a logic tree, got {:?}", params.conditions);
    };
    assert!(*negated);
    assert_eq!(*op, LogicOp::And);
    assert_eq!(children[0], filter("a", false, cmp(CompareOp::Eq, "x,y")));
    assert_eq!(
        children[1],
        filter("b", false, FilterOp::In(vec!["1".into(), "2".into()]))
    );
    assert_eq!(
        children[2],
        Condition::Logic {
            negated: true,
            op: LogicOp::Or,
            children: vec![
                filter("c", false, FilterOp::Is(IsValue::True)),
                filter("d", false, cmp(CompareOp::Eq, "{1,2}")),
            ],
        }
    );
}

#[test]
fn reserved_parameters() {
    let params = parse("select=a,%22b%20c%22,alias:d&columns=a,b&on_conflict=x,y&order=a.desc.nullslast,b&limit=10&offset=nope")
        .expect("parses");
    assert_eq!(
        params.select,
        Some(vec!["a".into(), "b c".into(), "d".into()])
    );
    assert_eq!(params.columns, Some(vec!["a".into(), "b".into()]));
    assert_eq!(params.on_conflict, Some(vec!["x".into(), "y".into()]));
    assert_eq!(
        params.order,
        vec![
            OrderTerm {
                column: "a".into(),
                descending: true,
                nulls_first: Some(false)
            },
            OrderTerm {
                column: "b".into(),
                descending: false,
                nulls_first: None
            },
        ]
    );
    assert_eq!(params.limit, Some(10));
    assert_eq!(params.offset, None);
}

#[test]
fn values_without_an_operator_are_not_filters() {
    let params = parse("apikey=abc&id=5&name=").expect("parses");
    assert!(params.conditions.is_empty());
}

#[test]
fn malformed_input_is_pgrst100() {
    for query in [
        "or=(a.eq.1",
        "or=a.eq.1",
        "id=eq",
        "order=a.sideways",
        "a=is.maybe",
    ] {
        let err = parse(query).expect_err(query);
        assert_eq!(err.status, 400, "{query}");
        assert_eq!(err.body["code"], "PGRST100", "{query}");
    }
    let err = parse("a=eqq.1&b=in.(1").expect_err("bad in list");
    assert_eq!(err.body["code"], "PGRST100");
}

#[test]
fn embedded_filters_are_refused_not_ignored() {
    let err = parse("clients.id=eq.1").expect_err("embedded");
    assert_eq!(err.status, 400);
}
