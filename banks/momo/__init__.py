"""MoMo payment gateway v2 (wallet, server-to-server create): connector and simulator."""
