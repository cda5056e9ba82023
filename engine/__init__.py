"""crm-policy-engine: customer-relationship policies as data, applied to Excel exports."""

__version__ = "0.1.0"
