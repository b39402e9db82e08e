# Customer-managed encryption keys, one per use, rotated at least every 90 days, never
# destroyed by Terraform. Granted per key, never on the key ring or the project.

resource "google_kms_key_ring" "this" {
  project  = var.project_id
  name     = var.name
  location = var.region
}

resource "google_kms_crypto_key" "this" {
  for_each        = var.keys
  name            = each.key
  key_ring        = google_kms_key_ring.this.id
  rotation_period = var.rotation_period
  purpose         = "ENCRYPT_DECRYPT"
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "this" {
  for_each = merge([
    for key, cfg in var.keys : {
      for i, member in cfg.encrypters_decrypters : "${key} ${i}" => { key = key, member = member }
    }
  ]...)
  crypto_key_id = google_kms_crypto_key.this[each.value.key].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value.member
}
