# --- The fleet: one worker per camera, in a regional managed instance group ------------------------------------
# The instance template is the worker VM's definition; each camera is a stateful per-instance config whose
# metadata carries its stream URL (the start-up script reads `fer-source`). The group replaces a worker whose
# /healthz stops answering, and rolls out a new template one instance at a time. Every worker follows the
# registry's `champion` alias, so a promotion reaches the fleet within serve.poll_s without a rollout.

resource "google_compute_instance_template" "worker" {
  name_prefix  = "${var.name}-worker-"
  machine_type = var.machine_type
  tags         = ["${var.name}-worker"]
  labels       = local.labels

  disk {
    source_image = local.worker_image
    disk_size_gb = 30
    auto_delete  = true
    boot         = true
  }

  network_interface {
    network = var.network
    access_config {}
  }

  metadata = merge(local.worker_metadata, { startup-script = file("${path.module}/../vm/startup.sh") })

  service_account {
    email  = google_service_account.worker.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_health_check" "worker" {
  name                = "${var.name}-worker-healthz"
  check_interval_sec  = 15
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 4

  http_health_check {
    port         = var.worker_http_port
    request_path = "/healthz"
  }
}

# Google's health checkers reach the workers from these ranges.
resource "google_compute_firewall" "worker_health_checks" {
  count         = length(var.cameras) > 0 ? 1 : 0
  name          = "${var.name}-allow-health-checks"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = ["130.211.0.0/22", "35.191.0.0/16"]
  target_tags   = ["${var.name}-worker"]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.worker_http_port)]
  }
}

resource "google_compute_region_instance_group_manager" "workers" {
  count                     = length(var.cameras) > 0 ? 1 : 0
  name                      = "${var.name}-workers"
  region                    = var.region
  base_instance_name        = "${var.name}-cam"
  distribution_policy_zones = length(var.fleet_zones) > 0 ? var.fleet_zones : null

  version {
    instance_template = google_compute_instance_template.worker.self_link
  }

  auto_healing_policies {
    health_check      = google_compute_health_check.worker.id
    initial_delay_sec = 900 # the first boot installs the project
  }

  # Stateful instances keep their names and metadata: they are recreated in place, one at a time.
  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    replacement_method    = "RECREATE"
    max_surge_fixed       = 0
    max_unavailable_fixed = length(var.fleet_zones) > 0 ? length(var.fleet_zones) : 3
  }
}

resource "google_compute_region_per_instance_config" "camera" {
  for_each                      = var.cameras
  region                        = var.region
  region_instance_group_manager = google_compute_region_instance_group_manager.workers[0].name
  name                          = "${var.name}-cam-${each.key}"

  preserved_state {
    metadata = {
      fer-source = each.value
    }
  }
}
