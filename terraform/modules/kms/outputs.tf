output "keys" {
  description = "Key name => key id."
  value       = { for k, v in google_kms_crypto_key.this : k => v.id }
  depends_on  = [google_kms_crypto_key_iam_member.this]
}
