locals {
  labels = { app = "fer", managed-by = "terraform" }
  # What every worker's start-up script reads (infra/vm/startup.sh): the single VM and the fleet's template.
  worker_image = "debian-cloud/debian-12" # Python 3.11, as the lock file
  worker_metadata = {
    enable-oslogin   = "TRUE"
    fer-src          = var.fer_src
    fer-source       = var.fer_source
    fer-http-bind    = "0.0.0.0:${var.worker_http_port}"
    fer-tracking-uri = var.tracking_uri
    fer-http-token   = var.http_token
  }
}

# --- Storage: data and artifacts ---------------------------------------------------------------------------
resource "google_storage_bucket" "data" {
  name                        = "${var.project_id}-${var.name}-data"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.artifact_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["timelines/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
}

# --- Service accounts: least privilege -----------------------------------------------------------------------
resource "google_service_account" "worker" {
  account_id   = "${var.name}-worker"
  display_name = "FER realtime worker (reads models, writes timelines)"
}

resource "google_service_account" "pipeline" {
  account_id   = "${var.name}-pipeline"
  display_name = "FER retraining pipeline (reads data, writes artifacts)"
}

resource "google_storage_bucket_iam_member" "worker_reads" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_writes" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# --- The worker VM ---------------------------------------------------------------------------------------------
resource "google_compute_instance" "worker" {
  name         = "${var.name}-worker-1"
  machine_type = var.machine_type
  zone         = var.zone
  tags         = ["${var.name}-worker"]
  labels       = local.labels

  boot_disk {
    initialize_params {
      image = local.worker_image
      size  = 30
    }
  }

  network_interface {
    network = var.network
    access_config {}
  }

  metadata                = local.worker_metadata
  metadata_startup_script = file("${path.module}/../vm/startup.sh")

  service_account {
    email  = google_service_account.worker.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }
}

# --- Firewall: SSH only through IAP; the worker's port only from configured ranges ------------------------------
resource "google_compute_firewall" "ssh_iap" {
  name          = "${var.name}-allow-ssh-iap"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = ["35.235.240.0/20"] # Google's IAP TCP forwarding range
  target_tags   = ["${var.name}-worker"]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "worker_http" {
  count         = length(var.worker_http_allowed_cidrs) > 0 ? 1 : 0
  name          = "${var.name}-allow-worker-http"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = var.worker_http_allowed_cidrs
  target_tags   = ["${var.name}-worker"]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.worker_http_port)]
  }
}
