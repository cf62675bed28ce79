// Ask a VNPay gateway for an order with the npm vnpay library; print what it concluded.
// Usage: node vnpay_querydr.js <gateway root URL> <tmnCode> <secret> <vnp_TxnRef> <yyyyMMddHHmmss>
const { VNPay } = require('vnpay');

async function main() {
  const [host, tmnCode, secureSecret, txnRef, transactionDate] = process.argv.slice(2);
  const vnpay = new VNPay({
    tmnCode, secureSecret, vnpayHost: host, queryDrAndRefundHost: host, testMode: false,
  });
  const now = new Date(Date.now() + 7 * 3600 * 1000).toISOString().replace(/\D/g, '').slice(0, 14);
  const result = await vnpay.queryDr({
    vnp_RequestId: `node${Date.now()}`,
    vnp_IpAddr: '127.0.0.1',
    vnp_TxnRef: txnRef,
    vnp_TransactionDate: Number(transactionDate),
    vnp_OrderInfo: `Truy van ${txnRef}`,
    vnp_CreateDate: Number(now),
  });
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
