"""QuickBooks Online's account classification: Classification > AccountType > AccountSubType.

Intuit's Account entity reference
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/account)
groups every account into one of five classifications, each holding account types,
each holding detail types (``AccountSubType``), one of them the type's default.
A create may name the type, the detail type or both
(https://developer.intuit.com/app/developer/qbo/docs/learn/learn-basic-bookkeeping/accounts):
the missing one is derived and ``Classification`` always is.

The detail types listed are the US ones plus the few global ones the same enum
carries; a detail type named under two account types (``Utilities``) resolves to
the first when it is given alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountType:
    name: str  # as Intuit spells it in JSON, e.g. "Other Current Asset"
    classification: str
    default_sub_type: str
    sub_types: tuple[str, ...]


_TYPES = (
    AccountType(
        "Bank",
        "Asset",
        "CashOnHand",
        (
            "CashOnHand", "Checking", "MoneyMarket", "RentsHeldInTrust", "Savings",
            "TrustAccounts", "CashAndCashEquivalents", "OtherEarMarkedBankAccounts",
        ),
    ),
    AccountType(
        "Other Current Asset",
        "Asset",
        "EmployeeCashAdvances",
        (
            "AllowanceForBadDebts", "DevelopmentCosts", "EmployeeCashAdvances",
            "OtherCurrentAssets", "Inventory", "Investment_MortgageRealEstateLoans",
            "Investment_Other", "Investment_TaxExemptSecurities",
            "Investment_USGovernmentObligations", "LoansToOfficers", "LoansToOthers",
            "LoansToStockholders", "PrepaidExpenses", "Retainage", "UndepositedFunds",
        ),
    ),
    AccountType(
        "Fixed Asset",
        "Asset",
        "FurnitureAndFixtures",
        (
            "AccumulatedDepletion", "AccumulatedDepreciation", "DepletableAssets",
            "FixedAssetComputers", "FixedAssetCopiers", "FixedAssetFurniture",
            "FixedAssetPhone", "FixedAssetPhotoVideo", "FixedAssetSoftware",
            "FixedAssetOtherToolsEquipment", "FurnitureAndFixtures", "Land",
            "LeaseholdImprovements", "OtherFixedAssets", "AccumulatedAmortization",
            "Buildings", "IntangibleAssets", "MachineryAndEquipment", "Vehicles",
        ),
    ),
    AccountType(
        "Other Asset",
        "Asset",
        "Licenses",
        (
            "LeaseBuyout", "OtherLongTermAssets", "SecurityDeposits",
            "AccumulatedAmortizationOfOtherAssets", "Goodwill", "Licenses",
            "OrganizationalCosts",
        ),
    ),
    AccountType(
        "Accounts Receivable", "Asset", "AccountsReceivable", ("AccountsReceivable",)
    ),
    AccountType(
        "Equity",
        "Equity",
        "OpeningBalanceEquity",
        (
            "OpeningBalanceEquity", "PartnersEquity", "RetainedEarnings",
            "AccumulatedAdjustment", "OwnersEquity", "PaidInCapitalOrSurplus",
            "PartnerContributions", "PartnerDistributions", "PreferredStock",
            "CommonStock", "TreasuryStock", "EstimatedTaxes", "Healthcare",
            "PersonalIncome", "PersonalExpense",
        ),
    ),
    AccountType(
        "Expense",
        "Expense",
        "Travel",
        (
            "AdvertisingPromotional", "BadDebts", "BankCharges", "CharitableContributions",
            "CommissionsAndFees", "Entertainment", "EntertainmentMeals", "EquipmentRental",
            "FinanceCosts", "GlobalTaxExpense", "Insurance", "InterestPaid",
            "LegalProfessionalFees", "OfficeExpenses", "OfficeGeneralAdministrativeExpenses",
            "OtherBusinessExpenses", "OtherMiscellaneousServiceCost", "PromotionalMeals",
            "RentOrLeaseOfBuildings", "RepairMaintenance", "ShippingFreightDelivery",
            "SuppliesMaterials", "Travel", "TravelMeals", "Utilities", "Auto",
            "CostOfLabor", "DuesSubscriptions", "PayrollExpenses", "TaxesPaid",
            "UnappliedCashBillPaymentExpense",
        ),
    ),
    AccountType(
        "Other Expense",
        "Expense",
        "Depreciation",
        (
            "Depreciation", "ExchangeGainOrLoss", "OtherMiscellaneousExpense",
            "PenaltiesSettlements", "Amortization", "GasAndFuel", "HomeOffice",
            "HomeOwnerRentalInsurance", "OtherHomeOfficeExpenses", "MortgageInterest",
            "RentAndLease", "RepairsAndMaintenance", "ParkingAndTolls", "Vehicle",
            "VehicleInsurance", "VehicleLease", "VehicleLoanInterest", "VehicleLoan",
            "VehicleRegistration", "VehicleRepairs", "OtherVehicleExpenses", "Utilities",
            "WashAndRoadServices",
        ),
    ),
    AccountType(
        "Cost of Goods Sold",
        "Expense",
        "CostOfLaborCos",
        (
            "EquipmentRentalCos", "OtherCostsOfServiceCos", "ShippingFreightDeliveryCos",
            "SuppliesMaterialsCogs", "CostOfLaborCos",
        ),
    ),
    AccountType("Accounts Payable", "Liability", "AccountsPayable", ("AccountsPayable",)),
    AccountType("Credit Card", "Liability", "CreditCard", ("CreditCard",)),
    AccountType(
        "Long Term Liability",
        "Liability",
        "NotesPayable",
        ("NotesPayable", "OtherLongTermLiabilities", "ShareholderNotesPayable"),
    ),
    AccountType(
        "Other Current Liability",
        "Liability",
        "OtherCurrentLiabilities",
        (
            "DirectDepositPayable", "LineOfCredit", "LoanPayable", "GlobalTaxPayable",
            "GlobalTaxSuspense", "OtherCurrentLiabilities", "PayrollClearing",
            "PayrollTaxPayable", "PrepaidExpensesPayable", "RentsInTrustLiability",
            "TrustAccountsLiabilities", "FederalIncomeTaxPayable", "InsurancePayable",
            "SalesTaxPayable", "StateLocalIncomeTaxPayable",
        ),
    ),
    AccountType(
        "Income",
        "Revenue",
        "OtherPrimaryIncome",
        (
            "NonProfitIncome", "OtherPrimaryIncome", "SalesOfProductIncome",
            "ServiceFeeIncome", "DiscountsRefundsGiven", "UnappliedCashPaymentIncome",
        ),
    ),
    AccountType(
        "Other Income",
        "Revenue",
        "OtherInvestmentIncome",
        (
            "DividendIncome", "InterestEarned", "OtherInvestmentIncome",
            "OtherMiscellaneousIncome", "TaxExemptInterest",
        ),
    ),
)  # fmt: skip

ACCOUNT_TYPES = {t.name: t for t in _TYPES}


def type_of_sub_type(sub_type: str) -> AccountType | None:
    """The account type a detail type belongs to (the first, if several)."""
    return next((t for t in _TYPES if sub_type in t.sub_types), None)
