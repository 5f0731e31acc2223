"""Double-entry ledger: accounts, transfers, entries, holds, reversals."""
