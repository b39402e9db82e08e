terraform {
  required_version = ">= 1.6.0"
  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.x: google_sql_user.database_roles (Cloud SQL, January 2026), Cloud Run v2
      # invoker_iam_disabled and sidecars in jobs. The envs pin the same range.
      version = ">= 7.20.0, < 8.0.0"
    }
  }
}
