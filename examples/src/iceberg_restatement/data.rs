//! The example's data: the POS extract, the table's rows and schema, the transform, the manifests.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One day of one region in the POS extract.
#[derive(Debug, Clone)]
pub struct RegionDay {
    /// The business day.
    pub day: NaiveDate,
    /// The region.
    pub region: &'static str,
    /// Orders, voided ones included.
    pub orders: i64,
    /// Gross amount in cents, voided orders included.
    pub gross_cents: i64,
    /// Orders the POS marked `VOID` (February to April 2025 only).
    pub voided_orders: i64,
    /// Their amount in cents.
    pub voided_cents: i64,
}

/// A row of the table: daily order amount of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyAmount {
    /// Deterministic output id.
    pub id: String,
    /// The business day.
    pub order_date: NaiveDate,
    /// The region.
    pub region: String,
    /// Orders counted.
    pub orders: i64,
    /// Amount in cents.
    pub amount_cents: i64,
}

impl OutputRow for DailyAmount {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        // The table's partition value of the row: month(order_date) in Iceberg's human form.
        std::borrow::Cow::Owned(self.order_date.format("%Y-%m").to_string())
    }
}

/// A row as it is read back: the user columns and two lineage columns the staging sink filled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredAmount {
    pub(super) order_date: NaiveDate,
    pub(super) orders: i64,
    pub(super) amount_cents: i64,
    pub(super) transform_version: String,
    pub(super) produced_by_run_id: String,
}

/// `daily-region-amounts`: 1.4.0 counts every order of the extract; 1.5.0 leaves out voided orders
/// and emits no row for a day whose orders were all voided.
#[derive(Debug)]
pub struct RegionAmounts {
    pub(super) version: &'static str,
}

impl RegionAmounts {
    /// The accepted version.
    pub fn v1_4_0() -> Self {
        Self { version: "1.4.0" }
    }

    /// The corrected version.
    pub fn v1_5_0() -> Self {
        Self { version: "1.5.0" }
    }
}

impl DeterministicTransform for RegionAmounts {
    type Input = RegionDay;
    type Output = DailyAmount;

    fn name(&self) -> &str {
        TRANSFORM
    }

    fn version(&self) -> &str {
        self.version
    }

    fn apply(
        &self,
        d: &RegionDay,
        ctx: &TransformContext,
        out: &mut Vec<DailyAmount>,
    ) -> Result<(), TransformError> {
        let (orders, amount_cents) = if self.version == "1.4.0" {
            (d.orders, d.gross_cents)
        } else {
            (d.orders - d.voided_orders, d.gross_cents - d.voided_cents)
        };
        if orders == 0 {
            return Ok(());
        }
        out.push(DailyAmount {
            id: ctx.output_id(&[d.region, &d.day.to_string()]),
            order_date: d.day,
            region: d.region.to_owned(),
            orders,
            amount_cents,
        });
        Ok(())
    }
}

pub(super) fn date(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap_or_default()
}

/// The POS extract: every day of January to June 2025 for every region. From February to April
/// some orders of every day are voided, and on Sundays APAC's stores only rang up training orders,
/// all voided.
pub fn extract() -> Vec<RegionDay> {
    let mut out = Vec::new();
    let mut day = date(1, 1);
    while day < date(7, 1) {
        let doy = i64::from(day.ordinal());
        for (r, region) in (0i64..).zip(REGIONS) {
            let void_months = (2..=4).contains(&day.month());
            let training = void_months && region == "apac" && day.weekday() == Weekday::Sun;
            let orders = if training {
                5
            } else {
                20 + (doy * 7 + r * 13) % 30
            };
            let avg = 2_500 + ((doy * 31 + r * 17) % 40) * 25;
            let voided_orders = match (training, void_months) {
                (true, _) => orders,
                (false, true) => 1 + (doy + r) % 3,
                (false, false) => 0,
            };
            out.push(RegionDay {
                day,
                region,
                orders,
                gross_cents: orders * avg,
                voided_orders,
                voided_cents: voided_orders * avg,
            });
        }
        day = day + Days::new(1);
    }
    out
}

pub(super) fn table_ident(name: &str) -> Result<TableIdent, Error> {
    TableIdent::from_strs(name.split('.')).map_err(|e| {
        Error::adapter(
            "example",
            format!("--table {name}: expected namespace.table: {e}"),
        )
    })
}

/// The table's schema: the user columns, then the lineage columns; partitioned by
/// `month(order_date)`.
pub fn table_schema() -> Result<(Schema, UnboundPartitionSpec), Error> {
    let ice = |e: backfill_iceberg::iceberg::Error| Error::adapter("example", e);
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "order_date", Type::Primitive(PrimitiveType::Date)).into(),
        NestedField::required(3, "region", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(4, "orders", Type::Primitive(PrimitiveType::Long)).into(),
        NestedField::required(5, "amount_cents", Type::Primitive(PrimitiveType::Long)).into(),
    ];
    fields.extend(lineage_fields(6));
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(ice)?;
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "order_month", Transform::Month)
        .map_err(ice)?
        .build();
    Ok((schema, spec))
}

pub(super) fn months(from: u32, to_inclusive: u32) -> Vec<PartitionKey> {
    (from..=to_inclusive)
        .map(|m| PartitionKey::from(format!("2025-{m:02}")))
        .collect()
}

pub(super) fn manifest(
    run_id: &str,
    table: &str,
    version: &str,
    mutation: Mutation,
    from: u32,
    to: u32,
) -> RunManifest {
    let restatement = mutation == Mutation::ReplacePartitions;
    let kind = if restatement {
        RunKind::Restatement
    } else {
        RunKind::Backfill
    };
    let mut m = RunManifest::new(run_id, kind, ExecutionMode::Backfill);
    m.reason = if restatement {
        "1.4.0 counted orders the POS feed marked VOID (February to April 2025): restate with 1.5.0"
    } else {
        "load the first half of 2025 into the new Iceberg table"
    }
    .into();
    m.requested_by = REQUESTER.into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "bronze.pos_region_days".into(),
        snapshot: Some(SNAPSHOT.into()),
        range: Some(InputRange::Dates {
            from: date(from, 1),
            to_exclusive: date(to + 1, 1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = TRANSFORM.into();
    m.transform.version = version.into();
    m.transform.git_commit = Some(if restatement { "c0ffee5" } else { "9a1b2c3" }.into());
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: table.into(),
        mutation: Some(mutation),
        partitions: months(from, to),
        consumers: vec!["finance-monthly-close".into(), "sales-dashboard".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(2_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(5),
        checks: vec![
            "unique(id)".into(),
            "accepted_values(region)".into(),
            "business_delta(amount_cents)".into(),
        ],
        ..ValidationPlan::default()
    });
    m
}
