"""Refund receipts in the QuickBooks Online sandbox: money paid back to a customer.

Built from Intuit's RefundReceipt reference
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/refundreceipt)
and its webhooks page
(https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks):

* ``POST /refundreceipt`` creates, and updates (``"sparse": true`` too); ``GET
  /refundreceipt/{id}`` reads; ``select * from RefundReceipt where …`` queries;
  ``?operation=delete`` with ``Id`` and ``SyncToken`` deletes. Webhooks (Create,
  Update, Delete) and CDC report it like any entity.
* Required: ``DepositToAccountRef``, the "Account from which payment money is refunded
  … where Account.AccountType is Other Current Asset or Bank", and ``Line``: "A
  RefundReceipt object must have at least one line that describes an item" (a
  SalesItemLine; GroupLine is not modelled). Lines, tax and ``TotalAmt`` are worked
  out as an invoice's; ``TotalAmt`` is "Calculated by QuickBooks business logic; any
  value you supply is over-written"; ``Balance`` is 0 in every sample.
* ``CustomerRef`` is optional; ``TxnDate`` defaults to today.
* ``PrintStatus`` is ``NotSet``, ``NeedToPrint`` or ``PrintComplete``;
  ``PaymentRefNum`` (at most 100 characters) is "Required when PrintStatus is set to
  PrintComplete. If PrintStatus is set to NeedToPrint, the system sets PaymentRefNum
  to 'To Print'". The create sample (paid from the Bank account "Checking", no
  ``PrintStatus`` sent) answers ``NeedToPrint`` and "To Print".
* ``PaymentType`` is ``Cash``, ``Check``, ``CreditCard`` or ``Other``.

Choices where the reference is silent (docs/vendors/quickbooks.md, "Payments,
credits, refunds and voids"):

* A refund receipt names no invoice and moves no balance: ``Invoice.Balance`` and
  ``Customer.Balance`` stay as they were (it pays from an account, not from the
  customer's receivable).
* An account of another type answers 6000, a receipt without an item line 2020
  ``Line.SalesItemLineDetail``: the codes are not documented.
* Paid from an Other Current Asset account with no ``PrintStatus`` sent: ``NotSet``.
* A refund receipt's void (webhook operation ``Void``) is not modelled.
"""

from __future__ import annotations

REFUND_RECEIPT = "RefundReceipt"
DEPOSIT_ACCOUNT_TYPES = ("Bank", "Other Current Asset")
PRINT_STATUSES = ("NotSet", "NeedToPrint", "PrintComplete")
PAYMENT_TYPES = ("Cash", "Check", "CreditCard", "Other")
PAYMENT_REF_NUM_MAX = 100
TO_PRINT = "To Print"  # the PaymentRefNum of a receipt still to print


def print_status(requested: str, account_type: str) -> str:
    """The ``PrintStatus`` a receipt keeps: the one sent, else ``NeedToPrint`` when it
    pays from a Bank account (Intuit's create sample). NOT documented: the default for
    an Other Current Asset account; ``NotSet`` chosen."""
    if requested:
        return requested
    return "NeedToPrint" if account_type == "Bank" else "NotSet"
