#!/bin/bash
cp /hadoop-binary/launcher.jar ../generated/
