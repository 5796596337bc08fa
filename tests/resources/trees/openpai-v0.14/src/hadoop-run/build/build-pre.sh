#!/bin/bash
cp -r ../../../docs ../generated/docs
