// Package webhooks delivers Haldir's outbound webhooks.
//
// Messages are signed as the Standard Webhooks specification
// (https://www.standardwebhooks.com) describes: each POST carries
//
//	webhook-id: evt_…
//	webhook-timestamp: 1614265330
//	webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>
//
// where key is the base64-decoded part of a "whsec_…" secret. While a
// secret is being rotated every active secret signs, and the signatures
// are separated by spaces.
//
// Webhook URLs are attacker-controlled, so every call goes through an
// outbound.Guard that refuses private, loopback, link-local and other
// non-public addresses, both when a URL is checked and, again, on the
// address a connection is actually made to; redirects are not followed.
//
// Deliveries are durable: a Queue keeps them in the database
// (webhook_deliveries, webhook_attempts), and a Worker, which runs on every
// replica without a leader, claims due deliveries with a lease (FOR UPDATE
// SKIP LOCKED on Postgres), renews the lease while it sends them, and
// records each attempt, retrying with exponential backoff and full jitter.
// The deliveries of a replica that dies are taken over by the others when
// their leases run out (DefaultLease after the last renewal); a receiver
// may then get a message twice, and deduplicates by its webhook-id.
package webhooks
