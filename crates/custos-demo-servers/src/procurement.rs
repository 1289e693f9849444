//! `procurement`: procurement and finance, with one supplier up for renewal.
//!
//! The demo's high-stakes path: a renewal draft is harmless, booking it in the
//! finance system commits money, and deleting the supplier loses its record.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicBool, Ordering},
};

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ProtocolVersion, ServerConfig},
    schemars, tool, tool_handler, tool_router, ServerHandler,
};
use serde::Deserialize;

use crate::common::{info, protocol_versions, text, tool_error, Counter};

/// The only supplier's id.
const SUPPLIER_ID: &str = "S-9";

/// The only supplier's record.
const SUPPLIER: &str = "Supplier S-9: Acme Cloud GmbH. Contract renews 2027-01-31; \
current annual value 48000 EUR; payment terms net 30.";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct SupplierArgs {
    /// The supplier id, such as `S-9`.
    supplier_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct DraftRenewalArgs {
    /// The supplier whose contract to renew, such as `S-9`.
    supplier_id: String,
    /// The proposed annual value, in whole euros.
    amount: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct UpdateFinanceArgs {
    /// The renewal draft to book, such as `D-1`.
    draft_id: String,
    /// The amount to book, in whole euros.
    amount: i64,
}

/// The procurement and finance server.
#[derive(Debug)]
pub(crate) struct Procurement {
    /// The tools, built once so that listing and calling agree.
    tool_router: ToolRouter<Procurement>,
    /// Set by `delete_supplier`, so that the deletion is visible afterwards.
    supplier_deleted: AtomicBool,
    /// Numbers the renewal drafts `D-1`, `D-2`, ….
    drafts: Counter,
    /// Numbers the purchase orders `PO-4411`, `PO-4412`, ….
    purchase_orders: Counter,
}

impl Procurement {
    pub(crate) fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            supplier_deleted: AtomicBool::new(false),
            drafts: Counter::starting_at(1),
            purchase_orders: Counter::starting_at(4411),
        }
    }

    /// Whether `id` names a supplier that still exists.
    fn supplier_exists(&self, id: &str) -> bool {
        id == SUPPLIER_ID && !self.supplier_deleted.load(Ordering::Relaxed)
    }
}

#[tool_router]
impl Procurement {
    #[tool(
        title = "Get supplier",
        description = "Read a supplier's record: name, contract renewal date, annual value and payment terms.",
        annotations(
            title = "Get supplier",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn get_supplier(&self, Parameters(args): Parameters<SupplierArgs>) -> CallToolResult {
        if self.supplier_exists(&args.supplier_id) {
            text(SUPPLIER)
        } else {
            tool_error(format!("unknown supplier `{}`", args.supplier_id))
        }
    }

    #[tool(
        title = "Draft renewal",
        description = "Draft a contract renewal at a new annual value in whole euros; books nothing.",
        annotations(
            title = "Draft renewal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn draft_renewal(&self, Parameters(args): Parameters<DraftRenewalArgs>) -> CallToolResult {
        if !self.supplier_exists(&args.supplier_id) {
            return tool_error(format!("unknown supplier `{}`", args.supplier_id));
        }
        if args.amount <= 0 {
            return tool_error(format!("annual value must be positive, got `{}`", args.amount));
        }
        let id = self.drafts.next();
        text(format!("renewal draft D-{id} for {}: {} EUR per year", args.supplier_id, args.amount))
    }

    #[tool(
        title = "Update finance system",
        description = "Book a renewal draft as a purchase order in the finance system, committing the amount.",
        annotations(
            title = "Update finance system",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    fn update_finance_system(&self, Parameters(args): Parameters<UpdateFinanceArgs>) -> CallToolResult {
        if !self.drafts.issued_id("D-", &args.draft_id) {
            return tool_error(format!("unknown renewal draft `{}`", args.draft_id));
        }
        if args.amount <= 0 {
            return tool_error(format!("amount must be positive, got `{}`", args.amount));
        }
        let number = self.purchase_orders.next();
        text(format!("purchase order PO-{number} booked in the finance system for {} EUR", args.amount))
    }

    #[tool(
        title = "Delete supplier",
        description = "Delete a supplier and its record.",
        annotations(
            title = "Delete supplier",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn delete_supplier(&self, Parameters(args): Parameters<SupplierArgs>) -> CallToolResult {
        if !self.supplier_exists(&args.supplier_id) {
            return tool_error(format!("unknown supplier `{}`", args.supplier_id));
        }
        self.supplier_deleted.store(true, Ordering::Relaxed);
        text(format!("supplier {} deleted", args.supplier_id))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Procurement {
    fn get_info(&self) -> ServerConfig {
        info(
            "procurement",
            "Procurement and finance: read suppliers, draft contract renewals and book them in the finance system.",
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        protocol_versions()
    }
}
