"""Canonical business records. Connectors translate vendor shapes to and from these.

Money is always ``Decimal`` with an ISO-4217 currency; a float never touches an
amount. Fields a mapping did not set stay unset (pydantic tracks that), which is
how selective sync works: only fields the mapping lists are ever written.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Money(_Record):
    amount: Decimal
    currency: CurrencyCode

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("money must not be a float; pass a Decimal or a string")
        return value


class PartyKind(StrEnum):
    PERSON = "person"
    COMPANY = "company"


class Address(_Record):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


class Party(_Record):
    """A customer-to-be: a CRM contact or company."""

    kind: PartyKind
    display_name: str = Field(min_length=1, max_length=500)
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    tax_id: str | None = None
    currency: CurrencyCode | None = None
    payment_terms: str | None = None
    credit_limit: Decimal | None = None
    billing_address: Address | None = None


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class TaxTreatment(StrEnum):
    """The tax codes every accounting system understands; each connector writes them in
    its own terms. Any other ``tax_code`` is a code of the target's own, passed as is."""

    TAXABLE = "taxable"  # the company's default sales tax applies
    EXEMPT = "exempt"  # no tax on this line


class LineItem(_Record):
    name: str = Field(min_length=1)
    description: str | None = None
    sku: str | None = None
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    discount_amount: Decimal = Field(default=Decimal("0"), ge=0)
    tax_code: str | None = None  # a TaxTreatment, or the target's own code


class Deal(_Record):
    """A CRM deal after mapping; a won one becomes an invoice."""

    name: str = Field(min_length=1)
    status: DealStatus
    currency: CurrencyCode
    close_date: date | None = None
    payment_terms: str | None = None
    due_date: date | None = None
    # The invoice number; when mapped, an existing invoice with it is updated, never
    # duplicated. Its longest length is the accounting system's business.
    doc_number: str | None = Field(default=None, min_length=1)
    memo: str | None = None
    line_items: list[LineItem] = Field(default_factory=list)
    # The target's own invoice fields, by the name it shows them under.
    custom_fields: dict[str, str] = Field(default_factory=dict)


class InvoiceLine(_Record):
    """One line as any accounting system takes it: its own discount and tax code, and
    the item it sells when the target has one by that name or SKU."""

    name: str = Field(min_length=1)
    item_ref: str | None = None
    description: str | None = None
    quantity: Decimal
    unit_price: Decimal
    discount_amount: Decimal = Field(default=Decimal("0"), ge=0)  # off the whole line
    tax_code: str | None = None  # a TaxTreatment, or the target's own code

    @property
    def amount(self) -> Decimal:
        """Quantity × unit price, before the line's discount, unrounded."""
        return self.quantity * self.unit_price


class Invoice(_Record):
    """What the accounting connector writes. The customer is a target id; items, terms
    and tax codes are resolved (or refused) by the connector, the way its system has them."""

    customer_ref: str
    currency: CurrencyCode
    lines: list[InvoiceLine] = Field(min_length=1)
    txn_date: date | None = None
    due_date: date | None = None
    payment_terms: str | None = None  # by name, e.g. "Net 30"
    doc_number: str | None = None
    memo: str | None = None
    # The target's own invoice fields by name; only a target that declares the
    # ``invoice_custom_fields`` capability is given any.
    custom_fields: dict[str, str] = Field(default_factory=dict)
