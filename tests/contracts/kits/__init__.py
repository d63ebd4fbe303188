"""The registered vendor kits: every suite runs once per kit of its kind.

A new vendor is one kit module beside these and one line in ``KITS``.
"""

from __future__ import annotations

from tests.contracts.kits import hubspot, quickbooks, salesforce, xero
from tests.contracts.kits.base import AccountingKit, CrmKit, VendorKit

KITS: tuple[type[VendorKit], ...] = (
    hubspot.HubSpotKit,
    quickbooks.QuickBooksKit,
    salesforce.SalesforceKit,
    xero.XeroKit,
)

CRM_KITS = [kit for kit in KITS if issubclass(kit, CrmKit)]
ACCOUNTING_KITS = [kit for kit in KITS if issubclass(kit, AccountingKit)]
