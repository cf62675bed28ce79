"""VietQR bank transfer: the QR payload the payer scans (``emvco``), nothing wired yet."""
