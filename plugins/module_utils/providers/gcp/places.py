# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where things live on GCP: zones (us-central1-a) of Compute Engine, regions (us-central1) of Cloud Run
and of the collection's alarms, and the resource URLs the APIs answer with."""

from __future__ import annotations

import re

ZONE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-([a-z][a-z0-9]*)$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


def zone_region(zone):
    """The region of a zone (us-central1-a -> us-central1), None for anything else."""
    match = ZONE.match(zone or "")
    return match.group(1) if match else None


def location_of(region):
    """The region of a deployment's zone, or the region itself (a Cloud Run location)."""
    return zone_region(region) or region


def last_segment(url):
    return url.rstrip("/").rsplit("/", 1)[-1] if url else None
